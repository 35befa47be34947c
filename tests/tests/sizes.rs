//! Sizes a reader can hold in their head: no source file over 800 lines and no function
//! over 120, counted over the non-test code of every application crate (a file's lines
//! before its first `#[cfg(test)]`; `tests/` folders, `tests.rs` modules and benches are
//! tests). A long function is split into steps named for what they do; a long file into a
//! folder of modules, as `projections/src/runner/` and `domain/src/customer/` are.

use std::path::Path;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

/// The crates whose code is counted, from the workspace root.
const CRATES: &[&str] = &["domain", "commands", "projections", "api", "replay-tools"];

/// Each non-test source file and its non-test lines.
fn non_test_sources() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for krate in CRATES {
        walk(&root.join(krate), &root, &mut out);
    }
    assert!(out.len() > 100, "found only {} sources", out.len());
    out
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<String>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "benches" | "target") {
                walk(&path, root, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            let lines = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .map(str::to_string)
                .collect();
            let shown = path.strip_prefix(root).unwrap_or(&path);
            out.push((shown.display().to_string(), lines));
        }
    }
}

/// The line's code with string and char literals emptied and any line comment cut, so
/// that only the braces of the code itself are counted.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal ('{', '\''); a lifetime ('a) has no closing quote after one char.
            '\'' => {
                let mut ahead = chars.clone();
                let literal = match (ahead.next(), ahead.next(), ahead.next()) {
                    (Some('\\'), Some(_), Some('\'')) => 3,
                    (Some(_), Some('\''), _) => 2,
                    _ => 0,
                };
                for _ in 0..literal {
                    chars.next();
                }
                out.push('\'');
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// Functions longer than `max` lines (from the `fn` line to its closing brace):
/// `(lines, name, first line)`.
fn long_functions(lines: &[String], max: usize) -> Vec<(usize, String, usize)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let Some(name) = fn_name(&code) else {
            continue;
        };
        let (mut depth, mut opened) = (0i64, false);
        for (j, later) in lines.iter().enumerate().skip(i) {
            let code = code_of(later);
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            // A declaration without a body (a trait's) ends at its semicolon.
            let ended = (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';'));
            if ended {
                let length = j - i + 1;
                if length > max {
                    found.push((length, name, i + 1));
                }
                break;
            }
        }
    }
    found
}

/// The name of the function a line declares, if it declares one.
fn fn_name(code: &str) -> Option<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let before_ok = words[..at].iter().all(|w| {
        matches!(*w, "pub" | "async" | "const" | "unsafe" | "extern")
            || w.starts_with("pub(")
            || w.starts_with('"')
    });
    let name = words.get(at + 1)?;
    let name: String = name
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (before_ok && !name.is_empty()).then_some(name)
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> = non_test_sources()
        .into_iter()
        .filter(|(_, lines)| lines.len() > MAX_FILE_LINES)
        .map(|(path, lines)| format!("{path}: {} lines", lines.len()))
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_FILE_LINES} non-test lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_function_is_over_120_lines() {
    let mut long = Vec::new();
    for (path, lines) in non_test_sources() {
        for (length, name, line) in long_functions(&lines, MAX_FN_LINES) {
            long.push(format!("{path}:{line} {name}: {length} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn a_long_function_is_found_whatever_its_strings_and_comments_hold() {
    let mut lines = vec!["pub(crate) async fn too_long() -> Result<(), E> {".to_string()];
    lines.push("    let sql = \"SELECT '}' FROM {customers} }}\"; // }".into());
    lines.push("    let c = '}';".into());
    lines.extend((0..MAX_FN_LINES).map(|i| format!("    step_{i}(&'a x);")));
    lines.push("}".into());
    lines.push("fn short() {}".into());
    let found = long_functions(&lines, MAX_FN_LINES);
    assert_eq!(
        found,
        vec![(MAX_FN_LINES + 4, "too_long".to_string(), 1)],
        "the counter must see through braces in strings, chars and comments"
    );
    let mut just_fits = vec!["fn just_fits() {".to_string()];
    just_fits.extend((0..MAX_FN_LINES - 2).map(|i| format!("    step_{i}();")));
    just_fits.push("}".into());
    assert!(long_functions(&just_fits, MAX_FN_LINES).is_empty());
}
