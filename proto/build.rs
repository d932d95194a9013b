//! Compiles `hub/v1/*.proto` with protox (pure Rust, no `protoc`) and
//! generates the Rust types with prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["hub/v1/entities.proto", "hub/v1/sync.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
