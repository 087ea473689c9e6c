//! rovnctl
