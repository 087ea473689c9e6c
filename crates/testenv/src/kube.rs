//! etcd + kube-apiserver for tests.
