//! The example policies parse, lint as their comments say, and every fixture beside them
//! passes (the same check `keyrack policy test` runs).

use std::path::{Path, PathBuf};

use keyrack_plugin::{Intent, PayloadFormat};
use keyrack_policy::{Fixture, Policy};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn no_decoder(_: &str, _: PayloadFormat, _: &[u8], _: &str, _: &[u8]) -> Result<Intent, String> {
    Err("no chain plugins in the policy crate's tests".into())
}

fn run_dir(name: &str) -> usize {
    let policy_path = examples().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&policy_path).unwrap();
    let policy = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(examples().join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let fixture = Fixture::load(&path).unwrap();
        if fixture.needs_decoder() {
            continue;
        }
        let result = fixture.run(&policy, &no_decoder).unwrap();
        assert!(
            result.passed(),
            "{}: {:?}\n{}",
            path.display(),
            result.failures,
            result.decision.explain()
        );
        n += 1;
    }
    n
}

#[test]
fn treasury_fixtures_pass() {
    assert!(run_dir("treasury") >= 26);
}

#[test]
fn dev_fixtures_pass() {
    assert!(run_dir("dev") >= 5);
}

#[test]
fn treasury_lints_clean_and_dev_says_it_is_unsafe() {
    let treasury =
        Policy::from_toml(&std::fs::read_to_string(examples().join("treasury.toml")).unwrap())
            .unwrap();
    assert_eq!(treasury.lint(), vec![]);
    let dev =
        Policy::from_toml(&std::fs::read_to_string(examples().join("dev.toml")).unwrap()).unwrap();
    assert!(dev.description().unwrap().contains("UNSAFE FOR PRODUCTION"));
}
