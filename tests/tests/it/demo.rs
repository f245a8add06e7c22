//! The demo a new user runs first (`examples/demo.sh` runs the same binary): it must work, and
//! it checks its own final state (the image, its signatures and attestation at prod and both
//! mirrors; `ferry status` complete; the batch part's conflict left alone).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_promotes_a_push_and_a_batch_and_says_so() {
    let _ = crate::support::ferry_bin();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry-demo"))
        .env_remove("FERRY_CONFIG")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "ferry keys generate --output-prefix",
        "promoted to the primary: copied, signed and attested; 2 mirror(s) follow",
        "promoted to a mirror: copied, with the primary's signatures and attestation",
        "Every signature verifies with ferry.pub",
        "ferry_promotions_total{",
        "1 promotion(s): 1 complete, 0 incomplete",
        "ferry run stopped on SIGTERM (exit status: 0)",
        "ferry exited with 5 (some edges are excluded",
        "The demo finished: every check passed.",
    ] {
        assert!(text.contains(expected), "the demo's output lacks {expected:?}:\n{text}");
    }
    // A push by digest alone (an index's children) is not a mistake, so not a warning.
    assert!(!text.contains("WARN"), "the demo's pipeline warned:\n{text}");
}
