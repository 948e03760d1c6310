//! Link the `patchbay` binary with packed relative relocations (`-z pack-relative-relocs`,
//! `DT_RELR`) where the toolchain and the C library have them (GNU/Linux).
//!
//! A position-independent executable carries one 24-byte entry per pointer the loader must
//! fix at start (vtables, `&'static str`s in statics): several megabytes in this binary, which
//! the loader reads in full, so each of those pages stays in the process's resident memory.
//! Packed, they are a few kilobytes. The binary stays position-independent (ASLR is kept); the
//! fixed-up data itself is the same. Needs GNU ld 2.38 or lld 15 and glibc 2.36 to run (Debian
//! 12, Ubuntu 22.10 and later).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATCHBAY_NO_PACKED_RELOCS");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    // An older toolchain builds without it: `PATCHBAY_NO_PACKED_RELOCS=1`.
    if linux_gnu && std::env::var_os("PATCHBAY_NO_PACKED_RELOCS").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
