//! The Kubernetes manifests in `k8s/`, checked without a cluster (none can run here):
//!
//! - every overlay renders with `kubectl kustomize`, and every built-in object validates
//!   strictly against the Kubernetes schemas (`kubernetes-validate --strict`); STUNner's and
//!   the Gateway API's custom resources have no schema there and are the only ones allowed to
//!   go unchecked;
//! - every Deployment meets the pod standards (resources, probes, non-root, read-only root
//!   filesystem, no capabilities, a grace period that covers the service's drain);
//! - the Dockerfile builds what the manifests run;
//! - each service is run with exactly the command, args, env and ports its rendered
//!   Deployment gives it, in a network namespace standing in for the pod network, with the
//!   cluster's names resolving there, and the test playing what the cluster would provide
//!   (STUNner's CDS, a trace collector, the Kubernetes API with a mounted service account);
//!   then every probe and every Service port of the manifests must answer, a browser
//!   registration must work through them, ice-config's API requests must be allowed by the
//!   manifests' RBAC, and SIGTERM must drain within the grace period. A flag renamed in code
//!   breaks this test, not a cluster.

mod objects;
mod run;
mod standards;
