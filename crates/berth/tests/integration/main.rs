//! Integration tests: the berth binary on real containers (namespaces,
//! mounts, cgroups, processes). They need root; each cleans up after itself
//! and checks that nothing was left behind.

mod common;

mod bad_input;
mod busy;
mod cgroups;
mod console;
mod crash;
mod exec;
mod layer;
mod lifecycle;
mod namespaces;
mod process;
mod rootfs;
mod security;
mod terminal;
