//! The Kubernetes object shapes cloudlet writes, as plain serde structs.
//!
//! Fields are declared in sorted order of their JSON names so that serializing gives the
//! canonical form ([`cloudlet_core::resource::Body`]) directly, without building a JSON tree:
//! expanding 10,000 apps is a matter of milliseconds. A test checks every body is canonical.

use std::collections::BTreeMap;

use serde::Serialize;

/// Object metadata.
#[derive(Serialize)]
pub(crate) struct Meta<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'static str, String>,
    pub labels: Labels<'a>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
}

/// cloudlet's labels (and the app label when the object belongs to an app).
#[derive(Serialize)]
pub(crate) struct Labels<'a> {
    #[serde(rename = "app.kubernetes.io/managed-by")]
    pub managed_by: &'static str,
    #[serde(
        rename = "app.kubernetes.io/name",
        skip_serializing_if = "Option::is_none"
    )]
    pub app: Option<&'a str>,
    #[serde(rename = "cloudlet.dev/lab")]
    pub lab: &'a str,
}

/// A pod label selector on the app label.
#[derive(Serialize)]
pub(crate) struct AppSelector<'a> {
    #[serde(rename = "app.kubernetes.io/name")]
    pub app: &'a str,
}

/// Any object: apiVersion, kind, metadata, then the rest.
#[derive(Serialize)]
pub(crate) struct Object<'a, S: Serialize> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Meta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<S>,
}

/// A Secret whose values are references resolved by the provider at apply time.
#[derive(Serialize)]
pub(crate) struct SecretRefs<'a> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    #[serde(rename = "cloudlet.dev/secretRefs")]
    pub refs: BTreeMap<&'a str, BTreeMap<&'static str, String>>,
    pub kind: &'static str,
    pub metadata: Meta<'a>,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Serialize)]
pub(crate) struct DeploymentSpec<'a> {
    pub replicas: u32,
    pub selector: MatchLabels<'a>,
    /// StatefulSets only: the Service that governs the pods' names.
    #[serde(rename = "serviceName", skip_serializing_if = "Option::is_none")]
    pub service_name: Option<&'a str>,
    pub template: PodTemplate<'a>,
}

#[derive(Serialize)]
pub(crate) struct MatchLabels<'a> {
    #[serde(rename = "matchLabels")]
    pub match_labels: AppSelector<'a>,
}

#[derive(Serialize)]
pub(crate) struct PodTemplate<'a> {
    pub metadata: PodMeta<'a>,
    pub spec: PodSpec<'a>,
}

#[derive(Serialize)]
pub(crate) struct PodMeta<'a> {
    pub labels: AppSelector<'a>,
}

#[derive(Serialize)]
pub(crate) struct PodSpec<'a> {
    pub containers: Vec<Container<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<PodVolume<'a>>,
}

#[derive(Serialize)]
pub(crate) struct Container<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub args: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub command: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    #[serde(rename = "livenessProbe", skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe<'a>>,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(rename = "readinessProbe", skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Requests<'a>>,
    #[serde(rename = "volumeMounts", skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount<'a>>,
}

#[derive(Serialize)]
pub(crate) struct Probe<'a> {
    pub exec: Exec<'a>,
    #[serde(rename = "failureThreshold")]
    pub failure_threshold: u32,
    #[serde(rename = "initialDelaySeconds", skip_serializing_if = "is_zero")]
    pub initial_delay_seconds: u64,
    #[serde(rename = "periodSeconds")]
    pub period_seconds: u64,
    #[serde(rename = "timeoutSeconds")]
    pub timeout_seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub(crate) struct Exec<'a> {
    pub command: &'a [String],
}

#[derive(Serialize)]
pub(crate) struct EnvVar<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a str>,
    #[serde(rename = "valueFrom", skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ValueFrom<'a> {
    #[serde(rename = "secretKeyRef")]
    pub secret_key_ref: KeyRef<'a>,
}

#[derive(Serialize)]
pub(crate) struct KeyRef<'a> {
    pub key: &'a str,
    pub name: String,
}

#[derive(Serialize)]
pub(crate) struct ContainerPort {
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub name: String,
    pub protocol: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Requests<'a> {
    pub requests: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
pub(crate) struct VolumeMount<'a> {
    #[serde(rename = "mountPath")]
    pub mount_path: &'a str,
    pub name: &'a str,
    #[serde(rename = "readOnly", skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(rename = "subPath", skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct PodVolume<'a> {
    #[serde(rename = "configMap", skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapName>,
    pub name: &'a str,
    #[serde(
        rename = "persistentVolumeClaim",
        skip_serializing_if = "Option::is_none"
    )]
    pub pvc: Option<ClaimName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretName>,
}

#[derive(Serialize)]
pub(crate) struct SecretName {
    #[serde(rename = "secretName")]
    pub secret_name: String,
}

#[derive(Serialize)]
pub(crate) struct ConfigMapName {
    pub name: String,
}

/// A ConfigMap whose values are files of the lab, read by the provider at apply time.
#[derive(Serialize)]
pub(crate) struct FileRefs<'a> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    #[serde(rename = "cloudlet.dev/fileRefs")]
    pub refs: BTreeMap<String, String>,
    pub kind: &'static str,
    pub metadata: Meta<'a>,
}

#[derive(Serialize)]
pub(crate) struct ClaimName {
    #[serde(rename = "claimName")]
    pub claim_name: String,
}

#[derive(Serialize)]
pub(crate) struct ServiceSpec<Sel: Serialize> {
    #[serde(
        rename = "externalTrafficPolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_traffic_policy: Option<&'static str>,
    pub ports: Vec<ServicePort>,
    pub selector: Sel,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: &'static str,
    #[serde(rename = "targetPort")]
    pub target_port: u16,
}

#[derive(Serialize)]
pub(crate) struct IngressSpec<'a> {
    #[serde(rename = "ingressClassName")]
    pub class: &'a str,
    pub rules: Vec<IngressRule<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls<'a>>,
}

#[derive(Serialize)]
pub(crate) struct IngressRule<'a> {
    pub host: &'a str,
    pub http: HttpPaths<'a>,
}

#[derive(Serialize)]
pub(crate) struct HttpPaths<'a> {
    pub paths: Vec<HttpPath<'a>>,
}

#[derive(Serialize)]
pub(crate) struct HttpPath<'a> {
    pub backend: Backend<'a>,
    pub path: &'a str,
    #[serde(rename = "pathType")]
    pub path_type: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Backend<'a> {
    pub service: BackendService<'a>,
}

#[derive(Serialize)]
pub(crate) struct BackendService<'a> {
    pub name: &'a str,
    pub port: PortNumber,
}

#[derive(Serialize)]
pub(crate) struct PortNumber {
    pub number: u16,
}

#[derive(Serialize)]
pub(crate) struct IngressTls<'a> {
    pub hosts: Vec<&'a str>,
    #[serde(rename = "secretName")]
    pub secret_name: String,
}

/// `mib` MiB as the API server writes the quantity back (the largest binary suffix that
/// divides it: `1Gi`, not `1024Mi`), so what cloudlet applies reads back the same.
pub(crate) fn quantity_mib(mib: u64) -> String {
    if mib >= 1 << 20 && mib.is_multiple_of(1 << 20) {
        format!("{}Ti", mib >> 20)
    } else if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}Gi", mib >> 10)
    } else {
        format!("{mib}Mi")
    }
}

#[derive(Serialize)]
pub(crate) struct PvSpec<'a> {
    #[serde(rename = "accessModes")]
    pub access_modes: [&'static str; 1],
    pub capacity: Storage,
    #[serde(rename = "claimRef")]
    pub claim_ref: ClaimRef<'a>,
    #[serde(rename = "mountOptions")]
    pub mount_options: &'static [&'static str],
    pub nfs: Nfs,
    #[serde(rename = "persistentVolumeReclaimPolicy")]
    pub reclaim: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Storage {
    pub storage: String,
}

#[derive(Serialize)]
pub(crate) struct ClaimRef<'a> {
    pub name: String,
    pub namespace: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Nfs {
    pub path: String,
    pub server: String,
}

#[derive(Serialize)]
pub(crate) struct PvcSpec {
    #[serde(rename = "accessModes")]
    pub access_modes: [&'static str; 1],
    pub resources: PvcRequests,
    #[serde(rename = "storageClassName")]
    pub storage_class: String,
    #[serde(rename = "volumeName", skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct PvcRequests {
    pub requests: Storage,
}

#[derive(Serialize)]
pub(crate) struct PoolSpec {
    pub addresses: Vec<String>,
    #[serde(rename = "autoAssign")]
    pub auto_assign: bool,
}

#[derive(Serialize)]
pub(crate) struct L2Spec {
    #[serde(rename = "ipAddressPools")]
    pub pools: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct NetpolSpec {
    pub ingress: Vec<NetpolRule>,
    #[serde(rename = "podSelector")]
    pub pod_selector: Empty,
    #[serde(rename = "policyTypes")]
    pub policy_types: [&'static str; 1],
}

/// `{}`
#[derive(Serialize)]
pub(crate) struct Empty {}

#[derive(Serialize)]
pub(crate) struct NetpolRule {
    pub from: Vec<NetpolPeer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetpolPort>,
}

#[derive(Serialize)]
pub(crate) struct NetpolPeer {
    #[serde(rename = "ipBlock", skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NsSelector>,
    #[serde(rename = "podSelector", skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<Empty>,
}

#[derive(Serialize)]
pub(crate) struct IpBlock {
    pub cidr: &'static str,
}

#[derive(Serialize)]
pub(crate) struct NsSelector {
    #[serde(rename = "matchLabels")]
    pub match_labels: NsName,
}

#[derive(Serialize)]
pub(crate) struct NsName {
    #[serde(rename = "kubernetes.io/metadata.name")]
    pub name: String,
}

#[derive(Serialize)]
pub(crate) struct NetpolPort {
    pub port: u16,
    pub protocol: &'static str,
}
