//! A real, throwaway PostgreSQL server for integration tests (issue 15).
//!
//! Every [`PgCluster`] is its own `initdb`'d cluster in a fresh temp dir,
//! listening on 127.0.0.1 on a free port, so tests never share state with each
//! other or with a system instance. The application role authenticates with a
//! SCRAM password over TCP, exactly as tss-gate does in production; only the
//! harness's admin role uses the trusted unix socket.
//!
//! Include it with `#[path = "common/pg.rs"] mod pg;` (tests/common/mod.rs is
//! shared, so this module does not depend on it). Without PostgreSQL this
//! FAILS, never skips: scripts/test.sh installs Debian's `postgresql` package.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Seek, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Deadline of every wait; generous because CI machines have 2 busy cores.
const WAIT: Duration = Duration::from_secs(30);
/// Superuser created by initdb; only ever connects over the private socket.
const ADMIN: &str = "tss_gate_admin";
/// Role and database the service under test uses.
const APP: &str = "tss_gate";
/// Ports can be stolen between probing and binding; a few retries make that
/// race irrelevant without hiding real start failures.
const PORT_ATTEMPTS: usize = 5;

const MISSING: &str = "PostgreSQL is required by this test and was not found: install \
     Debian's `postgresql` package (`apt-get install -y --no-install-recommends postgresql`, \
     which provides initdb, pg_ctl, postgres and psql) or run scripts/test.sh, which installs it";

/// A running PostgreSQL cluster owned by one test: stopped and deleted on drop.
pub struct PgCluster {
    // Removed when the fields drop, i.e. after `Drop::drop` has stopped the
    // server that writes into it.
    dir: tempfile::TempDir,
    bins: Bins,
    /// `Some` when the tests run as root: initdb and postgres refuse to, so
    /// server-side commands run as the `postgres` system user.
    run_as: Option<RunAs>,
    port: u16,
    password: String,
    /// Cleans up if this process dies without unwinding (Ctrl-C, SIGKILL by
    /// a CI timeout): it waits for EOF on its stdin, which only our death (or
    /// `Drop`) delivers. Without it every interrupted run leaks a postmaster.
    guard: Option<Child>,
}

impl PgCluster {
    /// A fresh cluster, running and accepting connections, with the login
    /// role `tss_gate` (random password) owning the database `tss_gate`.
    ///
    /// Panics (with the server log's tail once there is one) when PostgreSQL
    /// is missing or does not come up within the deadline.
    pub fn start() -> PgCluster {
        let bins = Bins::find();
        let run_as = RunAs::needed();
        // The postgres user must be able to reach the data dir; TMPDIR may be
        // private to root, /tmp is traversable by everyone.
        let base = match run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("tss-gate-pg-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", base.display()));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.path().join("sock")).unwrap();
        let admin_password = random_secret();
        let pwfile = dir.path().join("admin-password");
        fs::write(&pwfile, format!("{admin_password}\n")).unwrap();
        if let Some(r) = &run_as {
            for p in [
                dir.path().to_path_buf(),
                dir.path().join("sock"),
                pwfile.clone(),
            ] {
                r.chown(&p);
            }
        }

        // From here on `Drop` cleans up whatever a panic leaves behind.
        let mut pg = PgCluster {
            dir,
            bins,
            run_as,
            port: 0,
            password: random_secret(),
            guard: None,
        };
        pg.initdb(&pwfile);
        let _ = fs::remove_file(&pwfile);
        pg.guard = Some(pg.spawn_guard());

        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port();
            pg.write_config();
            let log_start = pg.log().len();
            match pg.pg_ctl_start() {
                Ok(()) => break,
                Err(e) => {
                    let log = pg.log();
                    let new = log.get(log_start..).unwrap_or(&log);
                    let port_taken =
                        new.contains("could not bind") || new.contains("Address already in use");
                    if !(port_taken && attempt < PORT_ATTEMPTS) {
                        pg.fail(&format!("pg_ctl start failed: {e}"));
                    }
                }
            }
        }
        pg.wait_accepting();

        // The password is hex, so it needs no SQL quoting.
        pg.psql_in(
            "postgres",
            &format!(
                "CREATE ROLE {APP} LOGIN PASSWORD '{}';\nCREATE DATABASE {APP} OWNER {APP};\n",
                pg.password
            ),
        )
        .unwrap_or_else(|e| pg.fail(&format!("cannot create role/database {APP}: {e}")));
        pg
    }

    /// Connection URL for the service, without the password: tests pass the
    /// password separately, as production configs do (a secret never belongs
    /// in a URL that ends up in logs).
    pub fn url(&self) -> String {
        format!("postgres://{APP}@127.0.0.1:{}/{APP}", self.port)
    }

    /// The `tss_gate` role's password (random per cluster).
    pub fn password(&self) -> String {
        self.password.clone()
    }

    /// The TCP port on 127.0.0.1; it stays the same across `stop`/`kill` and
    /// `start_again`, so clients can reconnect to the same URL.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temp dir (data dir `data/`, socket dir `sock/`, log
    /// `server.log`); gone after drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far, for assertions (e.g. that crash recovery ran)
    /// and diagnostics.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs `sql` (a script: several statements, each in its own transaction
    /// unless it says otherwise) as the superuser in database `tss_gate`,
    /// over the unix socket so it works whatever the tests do to roles and
    /// passwords. Returns stdout unaligned and tuples-only (`a|b` per row).
    /// Panics with psql's stderr on any error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(APP, sql)
            .unwrap_or_else(|e| panic!("psql failed: {e}\n--- SQL ---\n{sql}"))
    }

    /// Runs `sql` like [`psql`](Self::psql) but as the `tss_gate` role over
    /// TCP to [`url`](Self::url) with `password` (SCRAM), i.e. the path the
    /// service takes. `Err` carries psql's stderr, so tests can assert that a
    /// connection or authentication is refused.
    pub fn try_psql_tcp(&self, password: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.psql_command();
        cmd.env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .arg("-d")
            .arg(self.url());
        run(cmd, Some(sql), WAIT)
    }

    /// Clean shutdown (`pg_ctl stop -m fast`): returns once the server has
    /// exited and the port refuses connections.
    pub fn stop(&self) {
        let mut args = self.pg_ctl_args("stop");
        args.extend(["-m", "fast"].map(String::from));
        if let Err(e) = run(
            self.server_command(&self.bins.pg_ctl, &args),
            None,
            WAIT * 2,
        ) {
            self.fail(&format!("pg_ctl stop failed: {e}"));
        }
        self.wait_refusing();
    }

    /// Starts the server again after `stop` or `kill`, on the same port and
    /// data; returns once it accepts connections (after crash recovery, if
    /// it was killed).
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            self.fail(&format!("pg_ctl start (again) failed: {e}"));
        }
        self.wait_accepting();
    }

    /// Crashes the server: SIGKILL to the postmaster, no shutdown checkpoint.
    /// Returns once no process of the cluster is left, because a restart
    /// refuses to run while orphaned backends still hold the old shared
    /// memory.
    pub fn kill(&self) {
        let data = self.data_dir();
        let data = data.canonicalize().unwrap_or(data);
        let pid = self
            .postmaster_pid()
            .unwrap_or_else(|| self.fail("kill: no postmaster.pid, the server is not running"));
        // A stale lock file's pid may belong to an unrelated process by now,
        // and we may be root: only a process working in our data dir dies.
        if !processes_in(&data).contains(&pid) {
            self.fail(&format!("kill: postmaster {pid} is not running"));
        }
        // SAFETY: plain syscall; the pid is checked to be our postmaster.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            let e = std::io::Error::last_os_error();
            self.fail(&format!("kill: SIGKILL to postmaster {pid} failed: {e}"));
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = processes_in(&data);
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                self.fail(&format!("kill: cluster processes {left:?} still alive"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Where PID 1 reaps orphans late or never (some containers), the dead
        // postmaster lingers as a zombie, and the next postmaster would take
        // its stale lock files for a live server. Normally init reaps it and
        // postgres discards the stale files itself.
        let grace = Instant::now() + Duration::from_secs(2);
        while proc_state(pid) == Some('Z') && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(20));
        }
        if proc_state(pid) == Some('Z') {
            let sock_lock = format!("sock/.s.PGSQL.{}.lock", self.port);
            let _ = fs::remove_file(self.data_dir().join("postmaster.pid"));
            let _ = fs::remove_file(self.dir.path().join(sock_lock));
        }
        self.wait_refusing();
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn initdb(&self, pwfile: &Path) {
        let args = [
            "-D".to_string(),
            path_arg(&self.data_dir()),
            format!("--username={ADMIN}"),
            "--auth-local=trust".to_string(),
            "--auth-host=scram-sha-256".to_string(),
            format!("--pwfile={}", path_arg(pwfile)),
            // Only skips syncing initdb's own files (a lost temp cluster is
            // worthless anyway); the server itself runs with fsync=on.
            "--no-sync".to_string(),
            // Independent of whatever locale the machine has (or lacks).
            "--locale=C".to_string(),
            "--encoding=UTF8".to_string(),
        ];
        if let Err(e) = run(self.server_command(&self.bins.initdb, &args), None, WAIT) {
            panic!("initdb failed: {e}");
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut f = fs::OpenOptions::new().append(true).open(&conf).unwrap();
        writeln!(f, "\ninclude 'tss_gate_harness.conf'").unwrap();
    }

    /// The harness's settings live in their own file, rewritten per port
    /// attempt; a plain `pg_ctl start` (as in `start_again`) picks them up.
    fn write_config(&self) {
        let path = self.data_dir().join("tss_gate_harness.conf");
        let sock = path_arg(&self.dir.path().join("sock"));
        let conf = format!(
            "# Written by tests/common/pg.rs\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             # Durability is under test: never trade it for speed here.\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             # Several tss-gate instances with their pools share one server.\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             # PostgreSQL < 14 defaults to md5, which scram-sha-256 in pg_hba rejects.\n\
             password_encryption = 'scram-sha-256'\n",
            port = self.port,
        );
        fs::write(&path, conf).unwrap();
        if let Some(r) = &self.run_as {
            r.chown(&path);
        }
    }

    fn pg_ctl_args(&self, action: &str) -> Vec<String> {
        vec![
            action.to_string(),
            "-D".to_string(),
            path_arg(&self.data_dir()),
            "-w".to_string(),
            "-t".to_string(),
            WAIT.as_secs().to_string(),
        ]
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut args = self.pg_ctl_args("start");
        args.extend(["-l".to_string(), path_arg(&self.log_path())]);
        // Our own deadline is longer than pg_ctl's so its message wins.
        run(
            self.server_command(&self.bins.pg_ctl, &args),
            None,
            WAIT * 2,
        )
        .map(|_| ())
    }

    /// Until both the TCP port (what the service uses) and the admin socket
    /// answer.
    fn wait_accepting(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                Ok(_) => match self.psql_in("postgres", "SELECT 1") {
                    Ok(_) => return,
                    Err(e) => e,
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                self.fail(&format!("server does not accept connections: {last}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_refusing(&self) {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
            if Instant::now() > deadline {
                self.fail("server still accepts connections");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn psql_command(&self) -> Command {
        let mut cmd = Command::new(&self.bins.psql);
        hermetic_env(&mut cmd, self.dir.path());
        cmd.env("PGCLIENTENCODING", "UTF8")
            // -X: no ~/.psqlrc; -w: never prompt for a password (it would
            // hang on a tty); -At: output tests can parse.
            .args(["-X", "-q", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        cmd
    }

    fn psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.psql_command();
        cmd.arg("-h")
            .arg(self.dir.path().join("sock"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", ADMIN, "-d", db]);
        run(cmd, Some(sql), WAIT)
    }

    /// `bin args` as the user the server runs as.
    fn server_command(&self, bin: &Path, args: &[String]) -> Command {
        let mut cmd = match &self.run_as {
            None => {
                let mut c = Command::new(bin);
                c.args(args);
                c
            }
            Some(RunAs {
                runuser: Some(runuser),
                ..
            }) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(bin).args(args);
                c
            }
            Some(RunAs { runuser: None, .. }) => {
                let mut c = Command::new("su");
                c.args(["postgres", "-s", "/bin/sh", "-c"])
                    .arg(shell_command(bin, args));
                c
            }
        };
        hermetic_env(&mut cmd, self.dir.path());
        // The test's cwd may be unreadable for the postgres user.
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// A `sh` that stops the server and deletes the dir once its stdin (held
    /// by this process) reaches EOF. It ignores the terminal's signals so a
    /// Ctrl-C reaches it only through our death.
    fn spawn_guard(&self) -> Child {
        let mut stop = self.pg_ctl_args("stop");
        stop.extend(["-m", "immediate"].map(String::from));
        let stop = match &self.run_as {
            None => shell_command(&self.bins.pg_ctl, &stop),
            Some(RunAs {
                runuser: Some(runuser),
                ..
            }) => format!(
                "{} -u postgres -- {}",
                shell_quote(&path_arg(runuser)),
                shell_command(&self.bins.pg_ctl, &stop)
            ),
            Some(RunAs { runuser: None, .. }) => format!(
                "su postgres -s /bin/sh -c {}",
                shell_quote(&shell_command(&self.bins.pg_ctl, &stop))
            ),
        };
        let script = format!(
            "trap '' INT HUP TERM QUIT PIPE\nread _ignored\n{stop} </dev/null >/dev/null 2>&1\nrm -rf {}\n",
            shell_quote(&path_arg(self.dir.path()))
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        hermetic_env(&mut cmd, self.dir.path());
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot spawn the cleanup guard /bin/sh: {e}"))
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn fail(&self, msg: &str) -> ! {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "PostgreSQL test cluster ({}): {msg}\n--- tail of {} ---\n{tail}",
            self.dir.path().display(),
            self.log_path().display()
        );
    }
}

impl Drop for PgCluster {
    /// Immediate mode: the data is thrown away, so a shutdown checkpoint
    /// would only cost time. Failures are ignored: it may run while a failed
    /// test unwinds, and the guard and TempDir still clean up.
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let mut args = self.pg_ctl_args("stop");
            args.extend(["-m", "immediate"].map(String::from));
            let stopped = run(
                self.server_command(&self.bins.pg_ctl, &args),
                None,
                WAIT * 2,
            );
            if stopped.is_err() {
                // Last resort, limited to processes working in our data dir
                // (a stale pid file may name an unrelated process).
                let data = self.data_dir();
                for pid in processes_in(&data.canonicalize().unwrap_or(data)) {
                    // SAFETY: plain syscall on one of the cluster's processes.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if let Some(mut guard) = self.guard.take() {
            // SIGKILL: the guard ignores the catchable signals on purpose.
            let _ = guard.kill();
            let _ = guard.wait();
        }
        // `dir` (TempDir) removes the directory when the fields drop.
    }
}

/// Absolute paths of the PostgreSQL programs.
struct Bins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

impl Bins {
    /// `pg_config --bindir` first, then the newest /usr/lib/postgresql/*/bin,
    /// then PATH: PATH may hold wrappers (Debian's pg_wrapper picks a
    /// cluster, not a binary), and initdb/pg_ctl find `postgres` next to
    /// themselves, so all three must come from one real bindir.
    fn find() -> Bins {
        let server = ["initdb", "pg_ctl", "postgres"];
        let complete = |d: &Path| server.iter().all(|b| d.join(b).is_file());

        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|d| complete(d));

        let from_debian = || {
            let mut dirs: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let version = e
                        .file_name()
                        .to_str()?
                        .split('.')
                        .map(|n| n.parse().ok())
                        .collect::<Option<Vec<u64>>>()?;
                    Some((version, e.path().join("bin")))
                })
                .filter(|(_, d)| complete(d))
                .collect();
            dirs.sort();
            dirs.pop().map(|(_, d)| d)
        };

        let from_path = || {
            let pg_ctl = on_path("pg_ctl")?.canonicalize().ok()?;
            pg_ctl
                .parent()
                .filter(|d| complete(d))
                .map(Path::to_path_buf)
        };

        let bindir = from_pg_config
            .or_else(from_debian)
            .or_else(from_path)
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL server programs (initdb, pg_ctl, postgres) not found via \
                     `pg_config --bindir`, in /usr/lib/postgresql/*/bin or on PATH. {MISSING}"
                )
            });
        let psql = Some(bindir.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| on_path("psql"))
            .unwrap_or_else(|| panic!("`psql` not found. {MISSING}"));
        Bins {
            initdb: bindir.join("initdb"),
            pg_ctl: bindir.join("pg_ctl"),
            psql,
        }
    }
}

/// The `postgres` system user (created by Debian's postgresql-common).
struct RunAs {
    uid: u32,
    gid: u32,
    /// util-linux's runuser; without it, `su` (needs no PAM session setup
    /// as root, but its command is a shell string).
    runuser: Option<PathBuf>,
}

impl RunAs {
    fn needed() -> Option<RunAs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let (uid, gid) = lookup_user("postgres").unwrap_or_else(|| {
            panic!(
                "the tests run as root, which initdb refuses; they run the server as the \
                 `postgres` system user, which does not exist. {MISSING}"
            )
        });
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| on_path("runuser"));
        Some(RunAs { uid, gid, runuser })
    }

    fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown postgres {}: {e}", path.display()));
    }
}

/// (uid, gid) of `name`; the reentrant call because tests run in threads.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf's length is passed.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Runs `cmd` to completion within `deadline`, feeding `stdin`. Output goes
/// to anonymous files, not pipes: no deadlock on large output, and a
/// postmaster forked by pg_ctl cannot keep a pipe open and hang us.
fn run(mut cmd: Command, stdin: Option<&str>, deadline: Duration) -> Result<String, String> {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let input = match stdin {
        Some(text) => {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            f.rewind().unwrap();
            Stdio::from(f)
        }
        None => Stdio::null(),
    };
    cmd.stdin(input)
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    // Not `{cmd:?}`: that would print the environment, i.e. PGPASSWORD.
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            break Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |f: &mut fs::File| {
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    let (stdout, stderr) = (read(&mut out), read(&mut err));
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what} {s}\n{stderr}{stdout}")),
        None => Err(format!(
            "{what} timed out after {deadline:?}\n{stderr}{stdout}"
        )),
    }
}

/// Inherited `PG*` variables (PGHOST, PGPASSWORD, PGDATA, PGOPTIONS, ...)
/// would silently redirect or alter connections; ~/.pgpass could supply a
/// password the test meant to withhold.
fn hermetic_env(cmd: &mut Command, dir: &Path) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGPASSFILE", dir.join("no-pgpass"))
        // English, locale-independent messages that tests can match.
        .env("LC_ALL", "C")
        .env_remove("LANGUAGE");
}

/// Pids of the live processes whose cwd is `data`: postgres processes chdir
/// to their data dir, and this still finds orphaned backends after the
/// postmaster died and they were reparented.
fn processes_in(data: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data)
                && !matches!(proc_state(pid), Some('Z' | 'X') | None)
        })
        .collect()
}

/// State letter from /proc/PID/stat (R, S, D, Z, ...), None if gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the state
    // follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A port the kernel just considered free on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// 128 random bits, hex: safe in SQL literals, URLs and pwfiles unquoted.
fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read /dev/urandom: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn path_arg(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
        .to_string()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn shell_command(bin: &Path, args: &[String]) -> String {
    std::iter::once(path_arg(bin))
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}
