//! rovnctl: command-line tooling for rovn.

pub mod crds;
