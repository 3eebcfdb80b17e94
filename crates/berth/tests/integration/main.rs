//! Integration tests: the berth binary on real containers (namespaces,
//! mounts, cgroups, processes). They need root; each cleans up after itself
//! and checks that nothing was left behind.

#[cfg(test)]
mod common;

#[cfg(test)]
mod bad_input;
#[cfg(test)]
mod busy;
#[cfg(test)]
mod cgroups;
#[cfg(test)]
mod console;
#[cfg(test)]
mod crash;
#[cfg(test)]
mod exec;
#[cfg(test)]
mod layer;
#[cfg(test)]
mod lifecycle;
#[cfg(test)]
mod namespaces;
#[cfg(test)]
mod process;
#[cfg(test)]
mod rootfs;
#[cfg(test)]
mod runc_compat;
#[cfg(test)]
mod security;
#[cfg(test)]
mod systemd_driver;
#[cfg(test)]
mod terminal;
