//! Certificates made with ovs-pki for TLS tests.
