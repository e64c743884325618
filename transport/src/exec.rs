//! Running a backend's own tools (`dnsmasq --test`, `exportfs -ra`, `kill -HUP`) and
//! reading and writing its files: on the machine cloudlet runs on (inside a namespace through
//! a command prefix), or on another machine over SSH ([`Host`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A command or file operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// An empty command line.
    #[error("no command to run")]
    Empty,
    /// The command could not be started or waited for.
    #[error("{command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command's input could not be written.
    #[error("writing to `{command}`")]
    Input {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed: {output}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit code, when it exited.
        code: Option<i32>,
        /// What it printed (standard output, then standard error).
        output: String,
    },
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    File {
        /// What was being done (`reading`, `writing`, `creating`, `renaming`).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn file<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::File {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `args` under `prefix` (empty on the machine itself; `["ip", "netns", "exec", "NS"]`
/// inside a network namespace); its standard output, or on failure a message with the
/// command and what it printed.
pub async fn run(prefix: &[String], args: &[&str]) -> Result<String, ExecError> {
    Host::Local {
        prefix: prefix.to_vec(),
    }
    .run(args)
    .await
}

/// Where a backend's machine is: this one (commands under an optional prefix such as
/// `ip netns exec NS`), or another one reached with the system's `ssh` client (its config,
/// keys and known hosts; host keys are verified, `BatchMode` never prompts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// This machine.
    Local {
        /// A command prefix (empty, or `["ip", "netns", "exec", "NS"]`).
        prefix: Vec<String>,
    },
    /// Another machine over SSH.
    Ssh {
        /// `user@host`.
        destination: String,
        /// Extra `ssh` options (`-p 2222`, `-i KEY`, `-o UserKnownHostsFile=...`).
        options: Vec<String>,
        /// A command prefix on that machine.
        prefix: Vec<String>,
    },
}

impl Default for Host {
    fn default() -> Self {
        Host::Local { prefix: Vec::new() }
    }
}

/// `s` quoted for a POSIX shell.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a finished command said: its standard output, or a failure with all it printed.
fn finished(args: &[&str], out: &std::process::Output) -> Result<String, ExecError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ExecError::Failed {
            command: args.join(" "),
            code: out.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

impl Host {
    /// The full command line for `args`.
    fn argv(&self, args: &[&str]) -> Vec<String> {
        match self {
            Host::Local { prefix } => prefix
                .iter()
                .cloned()
                .chain(args.iter().map(|a| (*a).to_string()))
                .collect(),
            Host::Ssh {
                destination,
                options,
                prefix,
            } => {
                let remote: Vec<String> = prefix
                    .iter()
                    .map(String::as_str)
                    .chain(args.iter().copied())
                    .map(quote)
                    .collect();
                let mut v = vec!["ssh".to_string(), "-o".into(), "BatchMode=yes".into()];
                v.extend(options.iter().cloned());
                v.push(destination.clone());
                v.push("--".into());
                v.push(remote.join(" "));
                v
            }
        }
    }

    /// Runs `args` there; its standard output, or a message with what it printed.
    pub async fn run(&self, args: &[&str]) -> Result<String, ExecError> {
        self.run_with_input(args, None).await
    }

    /// Runs `args` there with `input` on its standard input.
    pub async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<String, ExecError> {
        use tokio::io::AsyncWriteExt;
        let argv = self.argv(args);
        let Some((program, rest)) = argv.split_first() else {
            return Err(ExecError::Empty);
        };
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ExecError::Spawn {
                command: argv.join(" "),
                source,
            })?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(data)
                .await
                .map_err(|source| ExecError::Input {
                    command: args.join(" "),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| ExecError::Spawn {
                command: argv.join(" "),
                source,
            })?;
        finished(args, &out)
    }

    /// Runs `args` there with the local file `file` streamed to its standard input (a large
    /// file is never held in memory).
    pub async fn run_with_file(
        &self,
        args: &[&str],
        file: &std::path::Path,
    ) -> Result<String, ExecError> {
        let argv = self.argv(args);
        let Some((program, rest)) = argv.split_first() else {
            return Err(ExecError::Empty);
        };
        let input = std::fs::File::open(file).map_err(|source| ExecError::Input {
            command: args.join(" "),
            source,
        })?;
        let out = tokio::process::Command::new(program)
            .args(rest)
            .stdin(Stdio::from(input))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| ExecError::Spawn {
                command: argv.join(" "),
                source,
            })?;
        finished(args, &out)
    }

    /// A file's text, `None` when it does not exist.
    pub async fn read(&self, path: &std::path::Path) -> Result<Option<String>, ExecError> {
        match self {
            Host::Local { .. } => match tokio::fs::read_to_string(path).await {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(file("reading", path)(e)),
            },
            Host::Ssh { .. } => {
                let p = path.display().to_string();
                let out = self
                    .run(&[
                        "sh",
                        "-c",
                        "if [ -e \"$1\" ]; then echo y; cat \"$1\"; else echo n; fi",
                        "sh",
                        &p,
                    ])
                    .await?;
                Ok(out.strip_prefix("y\n").map(str::to_string))
            }
        }
    }

    /// Writes a file (its directory made first); on another machine through a temporary
    /// file renamed into place.
    pub async fn write(&self, path: &std::path::Path, text: &str) -> Result<(), ExecError> {
        match self {
            Host::Local { .. } => {
                if let Some(d) = path.parent() {
                    tokio::fs::create_dir_all(d)
                        .await
                        .map_err(file("creating", d))?;
                }
                tokio::fs::write(path, text)
                    .await
                    .map_err(file("writing", path))
            }
            Host::Ssh { .. } => {
                let p = path.display().to_string();
                self.run_with_input(
                    &["sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"", "sh", &p],
                    Some(text.as_bytes()),
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Renames a file; `Ok(false)` when `from` does not exist.
    pub async fn rename(
        &self,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> Result<bool, ExecError> {
        match self {
            Host::Local { .. } => match tokio::fs::rename(from, to).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(file("renaming", from)(e)),
            },
            Host::Ssh { .. } => {
                let (f, t) = (from.display().to_string(), to.display().to_string());
                let out = self
                    .run(&[
                        "sh",
                        "-c",
                        "if [ -e \"$1\" ]; then mv \"$1\" \"$2\" && echo y; else echo n; fi",
                        "sh",
                        &f,
                        &t,
                    ])
                    .await?;
                Ok(out.trim() == "y")
            }
        }
    }

    /// Copies a file; `Ok(false)` when `from` does not exist.
    pub async fn copy(
        &self,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> Result<bool, ExecError> {
        match self.read(from).await? {
            Some(t) => self.write(to, &t).await.map(|()| true),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_commands_are_quoted_for_the_remote_shell() {
        let h = Host::Ssh {
            destination: "root@router".into(),
            options: vec!["-p".into(), "2222".into()],
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), "r1".into()],
        };
        let argv = h.argv(&["sh", "-c", "cat \"$1\"", "sh", "/etc/it's here"]);
        assert_eq!(
            argv,
            vec![
                "ssh",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "root@router",
                "--",
                "ip netns exec r1 sh -c 'cat \"$1\"' sh '/etc/it'\\''s here'"
            ]
        );
    }
}
