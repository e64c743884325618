//! A MariaDB server for the tests of database dumps (Debian's `mariadb-server`: the server
//! and `mariadb-dump`, the `mysqldump` of MariaDB).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A MariaDB server on loopback whose `root` has a password; stopped when dropped.
pub struct Mariadb {
    home: PathBuf,
    server: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl Mariadb {
    /// Starts a server under `dir` whose `root` (over TCP) has `password`.
    pub fn start(dir: &Path, password: &str) -> Mariadb {
        let server_bin = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("needs Debian's mariadb-server (the server and mariadb-dump)");
        let port = crate::apiserver::free_port();
        let home = dir.join("mariadb");
        let data = home.join("data");
        std::fs::create_dir_all(&home).unwrap();
        let o = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", home.display()))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            o.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let socket = home.join("sock");
        let server = Command::new(server_bin)
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--tmpdir={}", home.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", home.join("pid").display()))
            .arg(format!("--log-error={}", home.join("log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let db = Mariadb { home, server, port };
        // Over the socket with the fresh install's password-less root, until it answers;
        // then root gets its password, over TCP too.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = db
                .client(None)
                .arg(format!("--socket={}", socket.display()))
                .args(["-e", "SELECT 1"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer: {}",
                std::fs::read_to_string(db.home.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let grant = format!(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{password}'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}'"
        );
        let o = db
            .client(None)
            .arg(format!("--socket={}", socket.display()))
            .args(["-e", &grant])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        db
    }

    /// The `mariadb` client as root, with `password` (in its environment, never its
    /// arguments) when given.
    fn client(&self, password: Option<&str>) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-u", "root", "-N", "-B"]);
        match password {
            Some(p) => {
                c.env("MYSQL_PWD", p)
                    .args(["-h", "127.0.0.1"])
                    .arg(format!("--port={}", self.port));
            }
            None => {
                c.env_remove("MYSQL_PWD");
            }
        }
        c
    }

    /// `sql` run over TCP (in `db` when given): what it printed.
    pub fn sql(&self, password: &str, db: Option<&str>, sql: &str) -> String {
        let mut c = self.client(Some(password));
        c.args(["-e", sql]);
        if let Some(db) = db {
            c.arg(db);
        }
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The SQL file `file` loaded into `db`.
    pub fn load(&self, password: &str, db: &str, file: &Path) {
        let o = self
            .client(Some(password))
            .arg(db)
            .stdin(std::fs::File::open(file).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
