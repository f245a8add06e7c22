//! The attester function: a worker, or an AWS Lambda function behind an SQS event source.

fn main() -> std::process::ExitCode {
    ferry_bootstrap::main(ferry_attester::build)
}
