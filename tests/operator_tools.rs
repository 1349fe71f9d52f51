//! What an operator installs beside the binaries: lb's and lbctl's man pages and lbctl's shell
//! completions, each checked against the flags lb and lbctl take.

mod common;

use std::process::{Command, Stdio};

use clap::CommandFactory;
use common::process::bin;

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
