//! Compiles the Devzat plugin API the connector uses (../sshchat/proto/plugin.proto) with protox.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../sshchat/proto/plugin.proto");
    let files = protox::compile(["plugin.proto"], ["../sshchat/proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(files)?;
    Ok(())
}
