//! What a node of a cluster cloudlet makes needs before kubeadm runs, as a POSIX shell script
//! the install runs at its end (kickstart `%post`, autoinstall `late-commands`, preseed
//! `late_command`): swap off, the `overlay` and `br_netfilter` modules and the bridge/forwarding
//! sysctls, containerd with the systemd cgroup driver, and kubelet, kubeadm and kubectl of
//! exactly the lab's version from the Kubernetes package repository (pkgs.k8s.io, or the
//! mirror `cluster.kubernetes.packages` names), held at that version. kubelet is installed
//! disabled: the bootstrap enables it when the node joins.

use std::fmt::Write as _;

use cloudlet_core::model::{InstallFormat, Lab};

/// Which package manager the installed system has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// apt (Ubuntu autoinstall, Debian preseed).
    Deb,
    /// dnf (kickstart: Fedora, RHEL and its rebuilds).
    Rpm,
}

impl Family {
    /// The family of an install format.
    pub fn of(format: InstallFormat) -> Family {
        match format {
            InstallFormat::Kickstart => Family::Rpm,
            InstallFormat::Autoinstall | InstallFormat::Preseed => Family::Deb,
        }
    }
}

/// The node preparation of `machine`, when it is a node of a cluster the lab makes
/// (`cluster.kubernetes`); `None` otherwise.
pub fn script(lab: &Lab, machine: &str, family: Family) -> Option<String> {
    let c = lab.cluster.as_ref()?;
    let k = c.kubernetes.as_ref()?;
    if !c
        .control_plane
        .iter()
        .chain(&c.workers)
        .any(|n| n == machine)
    {
        return None;
    }
    let version = k.version.trim_start_matches('v');
    let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let flavour = match family {
        Family::Deb => "deb",
        Family::Rpm => "rpm",
    };
    let repo = k
        .packages
        .clone()
        .unwrap_or_else(|| format!("https://pkgs.k8s.io/core:/stable:/v{minor}/{flavour}"));
    let repo = repo.trim_end_matches('/');
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Kubernetes node preparation (cloudlet): v{version}, containerd, swap off"
    );
    s.push_str(
        "set -eu
swapoff -a || true
sed -i '/[[:space:]]swap[[:space:]]/ s/^[^#]/#&/' /etc/fstab
mkdir -p /etc/modules-load.d /etc/sysctl.d
printf 'overlay\\nbr_netfilter\\n' > /etc/modules-load.d/kubernetes.conf
printf 'net.bridge.bridge-nf-call-iptables = 1\\nnet.bridge.bridge-nf-call-ip6tables = 1\\nnet.ipv4.ip_forward = 1\\n' > /etc/sysctl.d/99-kubernetes.conf
",
    );
    match family {
        Family::Deb => {
            let _ = writeln!(
                s,
                "mkdir -p /etc/apt/keyrings
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y ca-certificates curl gpg containerd
curl -fsSL '{repo}/Release.key' | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {repo}/ /' > /etc/apt/sources.list.d/kubernetes.list
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y 'kubelet={version}-*' 'kubeadm={version}-*' 'kubectl={version}-*'
apt-mark hold kubelet kubeadm kubectl"
            );
        }
        Family::Rpm => {
            let _ = writeln!(
                s,
                "cat > /etc/yum.repos.d/kubernetes.repo <<'REPO'
[kubernetes]
name=Kubernetes
baseurl={repo}/
enabled=1
gpgcheck=1
gpgkey={repo}/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl
REPO
dnf install -y containerd
dnf install -y --disableexcludes=kubernetes 'kubelet-{version}' 'kubeadm-{version}' 'kubectl-{version}'"
            );
        }
    }
    // containerd 1.x is not supported from Kubernetes 1.36: refuse the install plainly.
    let minor_n: u32 = minor
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if minor_n >= 36 {
        s.push_str(
            "if ! containerd --version | grep -Eq ' v?[2-9]\\.'; then
  echo 'cloudlet: Kubernetes 1.36 and later need containerd 2.x; this release has' \"$(containerd --version)\" >&2
  exit 1
fi
",
        );
    }
    s.push_str(
        "mkdir -p /etc/containerd
containerd config default > /etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
grep -q 'SystemdCgroup = true' /etc/containerd/config.toml
systemctl enable containerd
systemctl disable kubelet || true
",
    );
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(extra: &str) -> Lab {
        let text = format!(
            "name: t\nsite: {{domain: t.lan}}\nnetworks:\n  k8s: {{cidr: 10.0.20.0/24, gateway: 10.0.20.1}}\nmachines:\n  cp: {{cpus: 2, memory: 4GiB, nics: [{{network: k8s, ip: 10.0.20.10}}]}}\n  w1: {{cpus: 2, memory: 4GiB, nics: [{{network: k8s, ip: 10.0.20.11}}]}}\n  other: {{cpus: 1, memory: 1GiB, nics: [{{network: k8s, ip: 10.0.20.12}}]}}\ncluster:\n  control_plane: [cp]\n  workers: [w1]\n{extra}"
        );
        cloudlet_core::load::load_texts(vec![("lab.yaml".into(), text)], ".".into())
            .unwrap()
            .lab
    }

    /// `sh -n` and `dash -n` parse it: a syntax error would fail every install.
    fn parses(script: &str) {
        for shell in ["sh", "dash", "bash"] {
            let o = std::process::Command::new(shell)
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{shell}: {}\n{script}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    #[test]
    fn nodes_of_a_cluster_cloudlet_makes_get_the_preparation() {
        let l = lab("  kubernetes: {version: v1.36.3}\n");
        for family in [Family::Deb, Family::Rpm] {
            for node in ["cp", "w1"] {
                let s = script(&l, node, family).unwrap();
                parses(&s);
                assert!(s.contains("1.36.3"), "{s}");
                assert!(
                    s.contains("https://pkgs.k8s.io/core:/stable:/v1.36/"),
                    "{s}"
                );
                assert!(s.contains("SystemdCgroup = true"), "{s}");
                assert!(s.contains("br_netfilter"), "{s}");
                assert!(s.contains("systemctl disable kubelet"), "{s}");
                assert!(s.contains("containerd 2.x"), "{s}");
            }
            assert_eq!(script(&l, "other", family), None);
        }
        // A mirror replaces the repository; without cluster.kubernetes nothing is added.
        let m =
            lab("  kubernetes: {version: v1.35.4, packages: \"https://mirror.lan/k8s/deb/\"}\n");
        let s = script(&m, "w1", Family::Deb).unwrap();
        assert!(s.contains("https://mirror.lan/k8s/deb/Release.key"), "{s}");
        assert!(!s.contains("pkgs.k8s.io"), "{s}");
        assert!(!s.contains("containerd 2.x"), "{s}");
        assert_eq!(script(&lab(""), "cp", Family::Deb), None);
    }
}
