//! Compiles every `.proto` file under `samenop/v1/` and `samenop/agent/v1/`
//! with protox (no system protoc), writes the file descriptor sets for the
//! reflection services (samenop.v1 alone, for the server; with
//! samenop.agent.v1, for the agent), and generates the prost messages and
//! tonic services.

use std::{env, fs, io, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    for dir in [
        root.join("samenop").join("v1"),
        root.join("samenop").join("agent").join("v1"),
    ] {
        let mut found = fs::read_dir(&dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, io::Error>>()?;
        found.retain(|path| path.extension().is_some_and(|ext| ext == "proto"));
        found.sort();
        println!("cargo:rerun-if-changed={}", dir.display());
        for file in &found {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        files.extend(found);
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The server's set describes samenop.v1 (and what it imports) only.
    let mut server = fds.clone();
    server.file.retain(|f| f.package() != "samenop.agent.v1");
    fs::write(
        out.join("samenop_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&server),
    )?;
    fs::write(
        out.join("samenop_agent_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Type names (`prost::Name`) let the codec name a request that fails to
    // decode; see src/codec.rs.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        .codec_path("crate::codec::SamenopCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
