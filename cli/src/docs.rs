//! What lbctl prints about itself without asking lb: a shell completion script and its man
//! page, both generated from the clap definitions in `args`, so neither can drift from the
//! flags and commands lbctl takes.

use crate::args::{self, Request};

/// The completion script or man page `request` asks for, or `None` for a request to lb.
pub fn generate(request: &Request) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match request {
        Request::Completions { shell } => clap_complete::generate(*shell, &mut args::command(), "lbctl", &mut out),
        Request::Man => clap_mangen::Man::new(args::command()).render(&mut out).expect("writing to a Vec cannot fail"),
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and every long flag of lbctl, as a user types them (hidden ones aside).
    fn names() -> Vec<String> {
        let command = args::command();
        let mut names: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        names.extend(
            command.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()).map(|l| format!("--{l}")),
        );
        assert!(names.len() > 30, "{names:?}");
        names
    }

    #[test]
    fn completions_name_every_command_and_flag() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let script = String::from_utf8(generate(&Request::Completions { shell }).unwrap()).unwrap();
            for name in names() {
                // fish spells a long flag `-l name`.
                let fish = format!("-l {}", name.trim_start_matches("--"));
                assert!(script.contains(&name) || script.contains(&fish), "{shell}: no {name}");
            }
        }
    }

    #[test]
    fn the_man_page_names_every_command_and_flag() {
        let man = String::from_utf8(generate(&Request::Man).unwrap()).unwrap();
        assert!(man.starts_with(".ie") || man.contains(".TH lbctl"), "{man}");
        let plain = man.replace("\\-", "-");
        for name in names() {
            assert!(plain.contains(&name), "man page: no {name}");
        }
    }
}
