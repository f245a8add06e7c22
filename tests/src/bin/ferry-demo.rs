//! The demo: starts staging, prod and mirror registries (CNCF distribution) on loopback, seeds
//! them so that a plan hits every action, writes a kpromo thin-manifest directory, runs
//! `ferry plan` on it, then `ferry promote --confirm`, then shows that the conflicting tag in
//! prod was left alone. `--keep` leaves everything running until Ctrl-C so you can try other
//! commands against it.
#![allow(clippy::print_stdout, reason = "a demo program talks to its user")]

use std::process::Command;

use ferry_testkit::world::World;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let ferry = std::env::current_exe()?.with_file_name("ferry");
    if !ferry.is_file() {
        println!("{} is missing: build it with `cargo build -p ferry-cli`", ferry.display());
        std::process::exit(1);
    }
    println!("Starting three registries (staging, prod, mirror) and seeding them...");
    let world = World::new().await;
    let dir = tempfile::Builder::new().prefix("ferry-demo-").tempdir()?;
    world.write_thin_dir(dir.path(), "")?;
    println!(
        "\n  staging  {}  demo/app:1.0 (2-platform index), demo/app:1.1, demo/single:2.0, demo/tools:3.0\n  \
         prod     {}  demo/app:1.1 (other content: a conflict), demo/single:2.0, demo/tools (untagged)\n  \
         mirror   {}  empty\n\n  manifests: {}\n",
        world.staging.host(),
        world.prod.host(),
        world.mirror.host(),
        dir.path().display()
    );
    let mut args =
        vec!["plan".to_owned(), "--thin-manifest-dir".to_owned(), dir.path().display().to_string()];
    args.extend(world.insecure_flags());
    println!("$ ferry {}\n", args.join(" "));
    let status = Command::new(&ferry).args(&args).status()?;
    println!(
        "\nferry exited with {} ({}).",
        status.code().unwrap_or(-1),
        match status.code() {
            Some(5) => "some edges are excluded: the conflict, the overlap and the missing source, as seeded",
            Some(0) => "nothing excluded",
            _ => "unexpected",
        }
    );
    let mut promote = args.clone();
    promote[0] = "promote".into();
    promote.push("--confirm".into());
    println!("\n$ ferry {}\n", promote.join(" "));
    let status = Command::new(&ferry).args(&promote).status()?;
    println!("\nferry exited with {}.", status.code().unwrap_or(-1));
    let prod = ferry_testkit::seed::Seeder::new(&world.prod);
    let (app_10, app_11) =
        (prod.tag_digest("demo/app", "1.0").await, prod.tag_digest("demo/app", "1.1").await);
    println!(
        "\nprod demo/app:1.0 -> {} (staging's index: {})\nprod demo/app:1.1 -> {} (untouched: it was {} before)",
        app_10.map(|d| d.to_string()).unwrap_or_default(),
        world.index.digest,
        app_11.map(|d| d.to_string()).unwrap_or_default(),
        world.prod_11.digest
    );
    if keep {
        println!(
            "\nThe registries keep running until Ctrl-C. Try:\n  {} snapshot {}/demo --insecure-registry {}",
            ferry.display(),
            world.staging.host(),
            world.staging.host()
        );
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
