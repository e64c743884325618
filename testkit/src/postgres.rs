//! A PostgreSQL server for the tests of database dumps.

use std::path::Path;

/// A PostgreSQL server on loopback, run by Debian's `postgres` user from Debian's package
/// (the server the `postgres` image runs); stopped when dropped.
pub struct Postgres {
    /// The server's bin directory (initdb, pg_ctl, psql, pg_dump).
    pub bin: std::path::PathBuf,
    data: std::path::PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl Postgres {
    /// Starts a server under `dir` whose `postgres` user has `password`.
    pub fn start(dir: &Path, password: &str) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("needs Debian's postgresql (the server and pg_dump)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("a PostgreSQL server under /usr/lib/postgresql");
        let port = crate::apiserver::free_port();
        let home = dir.join("pg");
        let data = home.join("data");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("pw"), password).unwrap();
        let run = |args: &[&str]| {
            let o = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        for d in [dir, &home] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        assert!(
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&home)
                .status()
                .unwrap()
                .success()
        );
        let initdb = bin.join("initdb");
        let pwfile = format!("--pwfile={}", home.join("pw").display());
        run(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &pwfile,
        ]);
        let pg_ctl = bin.join("pg_ctl");
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            home.display()
        );
        let log = home.join("log");
        run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "start",
        ]);
        Postgres { bin, data, port }
    }

    /// `psql` as postgres over TCP on `db` with `args` (stopping at the first error): what it
    /// printed.
    fn run_psql(&self, password: &str, db: &str, args: &[&std::ffi::OsStr]) -> String {
        let o = std::process::Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .args(args)
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `sql` run on `db`: what it printed.
    pub fn psql(&self, password: &str, db: &str, sql: &str) -> String {
        self.run_psql(password, db, &["-c".as_ref(), sql.as_ref()])
    }

    /// The SQL file `file` loaded into `db`.
    pub fn load(&self, password: &str, db: &str, file: &Path) {
        self.run_psql(
            password,
            db,
            &["-q".as_ref(), "-f".as_ref(), file.as_os_str()],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
