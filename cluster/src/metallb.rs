//! MetalLB's custom resources (`metallb.io/v1beta1`), typed, with their CRDs generated from
//! the types: the subset of MetalLB v0.16's schema that cloudlet writes (address pools and
//! layer-2 advertisements). Installing MetalLB installs its own, fuller CRDs; these let a
//! cluster without MetalLB (a test API server, a fresh cluster before MetalLB's manifests)
//! validate the objects cloudlet writes.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An `IPAddressPool`: the addresses MetalLB may hand to LoadBalancer Services.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// Ranges (`a.b.c.d-a.b.c.e`) or CIDRs.
    pub addresses: Vec<String>,
    /// Whether Services without a pinned address may get one from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Skip `.0` and `.255` addresses.
    #[serde(
        default,
        rename = "avoidBuggyIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub avoid_buggy_ips: Option<bool>,
}

/// An `L2Advertisement`: announce addresses of the named pools with ARP/NDP.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// The pools announced (all pools when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_pools: Option<Vec<String>>,
    /// The node interfaces to announce from (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
}

/// The CRDs of the MetalLB kinds cloudlet writes.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![IPAddressPool::crd(), L2Advertisement::crd()]
}
