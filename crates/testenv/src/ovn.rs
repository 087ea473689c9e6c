//! OVN/OVS daemons for tests.
