//! End-to-end tests of samenop: a real server on loopback, real mutual TLS,
//! real storage on disk. One test binary; one module per concern.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod audit;
mod audit_family;
mod consult;
mod device_power;
mod directory;
mod events;
mod family;
mod handshake;
mod identity;
mod input;
mod kept;
mod matrix;
mod metrics;
mod posts;
mod raw;
mod restart;
mod retention;
mod rights;
mod sends;
mod service;
mod thread;
mod undecodable;

/// The whole suite again with every server on PostgreSQL: this binary runs
/// itself with `SAMENOP_E2E_STORE=postgres` (every test but this one), on a
/// throwaway cluster of the machine's PostgreSQL (or the server
/// `SAMENOP_TEST_POSTGRES_URL` names), and passes only if every test does.
#[tokio::test]
async fn the_suite_on_postgres() {
    use samenop_server::store::postgres::throwaway;
    if samenop_tests::on_postgres() {
        return;
    }
    let Some(db) = throwaway::for_tests("the end-to-end suite on PostgreSQL").await else {
        return;
    };
    let exe = std::env::current_exe().expect("this test binary");
    let db_url = db.url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--skip", "the_suite_on_postgres", "--test-threads", "2"])
            .env(samenop_tests::STORE_VARIABLE, "postgres")
            .env(throwaway::URL_VARIABLE, db_url)
            .output()
            .expect("the suite runs")
    })
    .await
    .expect("the suite's process");
    let said = String::from_utf8_lossy(&out.stdout);
    let summary = said
        .lines()
        .rfind(|l| l.starts_with("test result:"))
        .unwrap_or("no summary");
    assert!(
        out.status.success(),
        "the suite on PostgreSQL failed ({summary}):\n{}\n{}",
        said.lines()
            .filter(|l| l.contains("FAILED") || l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains(" passed;"), "{summary}");
}
