//! What an operator installs beside the binaries: lb's and lbctl's man pages, lbctl's shell
//! completions, and contrib/lb.service, each checked against the flags lb and lbctl take.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::{CommandFactory, Parser};
use common::process::{bin, signal, wait_exit, wait_line, Lines};

/// Runs a workspace binary with `args` and returns its stdout; it must exit 0.
fn output_of(name: &str, args: &[&str]) -> String {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Does `tool` run here (`tool --version` exits 0)?
fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn lbs_man_page_names_every_flag() {
    let man = output_of("lb", &["--man"]);
    assert!(man.contains(".TH lb 1"), "{man}");
    let plain = man.replace("\\-", "-");
    let command = lb::daemon::Config::command();
    let flags: Vec<_> = command.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()).collect();
    assert!(flags.len() >= 15, "{flags:?}");
    for flag in flags {
        assert!(plain.contains(&format!("--{flag}")), "lb's man page: no --{flag}");
    }
    assert!(!plain.contains("--man"), "the flag that prints it is hidden");
}

#[test]
fn lbctls_man_page_and_completions_name_every_command() {
    // The commands as lbctl's help lists them: `  name  what it does`.
    let help = output_of("lbctl", &["--help"]);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&c| c != "help")
        .collect();
    assert!(
        commands.contains(&"addBackend") && commands.contains(&"completions") && commands.len() > 15,
        "{commands:?}"
    );
    let man = output_of("lbctl", &["man"]);
    assert!(man.contains(".TH lbctl 1"), "{man}");
    for shell in ["bash", "zsh", "fish"] {
        let script = output_of("lbctl", &["completions", shell]);
        for command in &commands {
            assert!(script.contains(command), "{shell} completion: no {command}");
            assert!(man.contains(command), "lbctl's man page: no {command}");
        }
        assert!(script.contains("token-file"), "{shell} completion: no --token-file");
        // Each script is valid for its shell, where that shell is installed.
        if shell == "bash" || installed(shell) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("lbctl.{shell}"));
            std::fs::write(&path, &script).unwrap();
            let checked = Command::new(shell).arg("-n").arg(&path).output().unwrap();
            assert!(checked.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&checked.stderr));
        } else {
            eprintln!("{shell} is not installed: its completion script was not checked by {shell} -n");
        }
    }
    let refused = Command::new(bin("lbctl")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

/// contrib/lb.service's `ExecStart=` line, split into the program and its arguments, with
/// systemd's `${STATE_DIRECTORY}` and `${CREDENTIALS_DIRECTORY}` replaced by `state` and
/// `credentials`.
fn exec_start(state: &Path, credentials: &Path) -> (String, Vec<String>) {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/lb.service")).unwrap();
    let lines: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("ExecStart=")).collect();
    assert_eq!(lines.len(), 1, "one ExecStart in {unit}");
    assert!(!lines[0].contains(['"', '\'', '\\']), "no quoting, so splitting on blanks is what systemd does");
    let expanded = lines[0]
        .replace("${STATE_DIRECTORY}", &state.display().to_string())
        .replace("${CREDENTIALS_DIRECTORY}", &credentials.display().to_string());
    assert!(!expanded.contains('$') && !expanded.contains('%'), "only the two variables: {expanded}");
    let mut words = expanded.split_whitespace().map(str::to_owned);
    (words.next().unwrap(), words.collect())
}

#[tokio::test]
async fn the_systemd_units_exec_start_is_a_command_line_lb_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (state, credentials) = (dir.path().join("state"), dir.path().join("credentials"));
    std::fs::create_dir_all(&credentials).unwrap();
    // As systemd hands a LoadCredential= file over: readable by the service's user only.
    let token = credentials.join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (program, args) = exec_start(&state, &credentials);
    assert_eq!(program, "/usr/local/bin/lb");

    // lb's own flag parser takes them, and they say what the unit means.
    let config = lb::daemon::Config::try_parse_from(std::iter::once("lb".to_owned()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("lb refuses the unit's flags: {e}"));
    assert_eq!(config.data_dir, state);
    assert_eq!(config.admin_token_file.as_deref(), Some(token.as_path()));
    assert_eq!(config.admin.to_string(), "127.0.0.1:8081");

    // And lb starts with them, serving with the token, on ports of its own choosing here.
    let port_zero = |arg: String| match arg.split_once('=') {
        Some(("--listen" | "--admin", _)) => format!("{}=127.0.0.1:0", arg.split_once('=').unwrap().0),
        _ => arg,
    };
    let mut child = Command::new(bin("lb"))
        .args(args.into_iter().map(port_zero))
        .env_remove("LB_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    Lines::collect(child.stdout.take().unwrap(), Some(tx));
    let stderr = Lines::collect(child.stderr.take().unwrap(), None);
    let admin = wait_line(&rx, "the admin listening line", |l| common::process::addr_after(l, "admin listening on "));
    let status = |token: Option<&'static str>| async move {
        let mut request = common::client().get(format!("http://{admin}/v1/pools"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(None).await, 401, "{}", stderr.text());
    assert_eq!(status(Some("0123456789abcdef0123456789abcdef")).await, 200, "{}", stderr.text());
    assert!(state.join("lb.pid").exists(), "the store is in the state directory");
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success(), "{}", stderr.text());
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !installed("systemd-analyze") {
        eprintln!("systemd-analyze is not installed: contrib/lb.service was not verified by it");
        return;
    }
    // verify checks that ExecStart's program exists and that man:lb(1) is found: both are
    // pointed at what this build makes, in a temp dir.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/lb.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/lb ", &format!("{} ", bin("lb").display()));
    std::fs::write(dir.path().join("lb.service"), unit).unwrap();
    std::fs::create_dir_all(dir.path().join("man/man1")).unwrap();
    std::fs::write(dir.path().join("man/man1/lb.1"), output_of("lb", &["--man"])).unwrap();
    let verified = Command::new("systemd-analyze")
        .args(["verify", "lb.service"])
        .current_dir(dir.path())
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    assert!(verified.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
