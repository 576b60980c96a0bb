//! `samenop-certs-dev`: writes the development PKI of samenop into a directory.
//!
//! Without `--force` it generates only when a file is missing, so running it twice
//! keeps the certificates that a running server and its clients already use.

use std::error::Error as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use samenop_certs_dev::{DEMO_ORGANISATIONS, Error, PkiPaths, ensure, generate};

/// Generates samenop's development PKI: a CA, a server certificate, one client
/// certificate per demo organisation, a CRL and certificates for negative tests.
/// Development only: never use these certificates in production.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The directory to write the PKI into (created when missing).
    #[arg(long, value_name = "DIR", default_value = "certs-dev/generated")]
    out: PathBuf,
    /// Regenerate everything, replacing existing files (and the CA).
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("samenop-certs-dev: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Generates (or keeps) the PKI and prints where everything is.
fn run(args: &Args) -> Result<(), Error> {
    let paths = PkiPaths::new(&args.out);
    let dir = paths.dir.display();
    if args.force {
        generate(&paths, DEMO_ORGANISATIONS)?;
        println!("generated a new development PKI in {dir}");
    } else if ensure(&paths, DEMO_ORGANISATIONS)? {
        println!("generated a new development PKI in {dir}");
    } else {
        println!("the development PKI in {dir} is complete; kept it (use --force to regenerate)");
    }
    print_paths(&paths);
    println!();
    println!("development only: never use these certificates in production");
    Ok(())
}

/// Prints the path of every file, and each organisation's OIN.
fn print_paths(paths: &PkiPaths) {
    let line = |label: &str, path: PathBuf| println!("  {label:<22} {}", path.display());
    println!();
    line("CA certificate", paths.ca_cert());
    line("CA key", paths.ca_key());
    line("server certificate", paths.server_cert());
    line("server key", paths.server_key());
    line("CRL", paths.crl());
    println!();
    println!("organisations (certificate, key, OIN):");
    for org in DEMO_ORGANISATIONS {
        println!(
            "  {} ({}, {}), OIN {}",
            org.name, org.kind, org.slug, org.oin
        );
        println!("    {}", paths.org_cert(org.slug).display());
        println!("    {}", paths.org_key(org.slug).display());
    }
    println!();
    println!("for negative tests:");
    line("expired certificate", paths.expired_cert());
    line("expired key", paths.expired_key());
    line("revoked certificate", paths.revoked_cert());
    line("revoked key", paths.revoked_key());
    line("untrusted CA", paths.untrusted_ca_cert());
    line("untrusted certificate", paths.untrusted_cert());
    line("untrusted key", paths.untrusted_key());
}
