//! A private RabbitMQ node, for tests that restart the broker. The shared node on 5672 is left
//! alone: other tests use it at the same time.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A RabbitMQ node of its own: its own port, node name and data directory. Stopped on drop.
#[derive(Debug)]
pub struct RabbitNode {
    port: u16,
    name: String,
    dir: tempfile::TempDir,
}

impl RabbitNode {
    /// Starts a node and waits until it accepts AMQP connections.
    pub fn start() -> Self {
        let port = free_port_pair();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server may run as the `rabbitmq` user: it must be able to write here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        std::fs::write(dir.path().join("rabbitmq.conf"), format!("listeners.tcp.local = 127.0.0.1:{port}\n"))
            .expect("config");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins");
        let node = RabbitNode { port, name: format!("ferry-it-{port}@localhost"), dir };
        let out = node
            .command("rabbitmq-server")
            .arg("-detached")
            .output()
            .expect("rabbitmq-server (apt-get install rabbitmq-server)");
        assert!(out.status.success(), "rabbitmq-server: {}", String::from_utf8_lossy(&out.stderr));
        node.wait_until_listening();
        node
    }

    fn command(&self, program: &str) -> Command {
        let path = |p: &str| -> PathBuf { self.dir.path().join(p) };
        let mut command = Command::new(crate::require_binary(program, "rabbitmq-server"));
        command
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", (self.port + DIST_OFFSET).to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PID_FILE", path("pid"));
        command
    }

    fn ctl(&self, args: &[&str]) {
        let out =
            self.command("rabbitmqctl").arg("-n").arg(&self.name).args(args).output().expect("rabbitmqctl");
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn wait_until_listening(&self) {
        // The node's own view first: the port alone could be anyone's.
        let pid = self.dir.path().join("pid");
        let out = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.name)
            .arg("wait")
            .arg(&pid)
            .args(["--timeout", "60"])
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "RabbitMQ node {} did not start: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log_errors()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ node {} did not listen on {} within 60 s",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log").join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// The first error lines of the node's log: where a failed start says why.
    pub fn log_errors(&self) -> String {
        self.log().lines().filter(|l| l.contains("[error]")).take(40).collect::<Vec<_>>().join("\n")
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application: every connection drops, queues stay on disk.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts it again and waits until it listens.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.wait_until_listening();
    }
}

/// The AMQP port and the Erlang distribution port (`port + DIST_OFFSET`) are chosen below the
/// kernel's ephemeral range (32768 and up), where the registries and proxies that other tests
/// start at the same time get their ports: a port freed and then bound by the node cannot be
/// taken in between by one of them.
const DIST_OFFSET: u16 = 5000;

fn free_port_pair() -> u16 {
    // Nodes started by tests running at the same time in this process start their search at
    // different places: a port found free here is bound by the node only seconds later.
    static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let start = 21_000 + ((std::process::id() as u16 % 4000 + nth.wrapping_mul(97)) % 4000);
    (0..4000)
        .map(|i| 21_000 + (start - 21_000 + i) % 4000)
        .find(|&port| free(port) && free(port + DIST_OFFSET))
        .expect("a free port pair in 21000..30000")
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = self.command("rabbitmqctl").arg("-n").arg(&self.name).arg("stop").output();
    }
}
