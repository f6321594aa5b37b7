//! Data keys that land where no policy looks. A data file that parses can
//! still put a key in the wrong place (a dedented `hot_wallets:` becomes
//! `data.hot_wallets`, not `data.keysign.hot_wallets`): the rule that reads
//! it sees nothing, and an allow-list read that way fails open. `check`,
//! `test` and the reload gate warn, with `file:line`, about
//! - data keys no policy reads (at the data file's line), and
//! - policy reads of data keys the data does not have (at the policy's
//!   line), each with a "did you mean" when a close or same-named key exists.
//!
//! Reads are the `data.…` references of the non-test policies (see
//! [`super::reach::rule_refs`]). A dynamic step (`data.keysign[x]`) reads
//! every key there; a read of an object (`cfg := data.keysign.usdt_cap`)
//! reads all of it. Tables the server reads itself ([`SERVER_READ`]) are
//! never unread, and reads the policy itself guards (`is_object(data.x)`,
//! `object.get(data.x, …)`) may be absent, as may a table looked up by a
//! computed key (`data.keysign.soft_caps[id]`: absent, it reads as empty)
//! unless a key of that name or spelling is elsewhere. Test files do not
//! count: a key only a test reads is still one the decision never sees.

use std::path::PathBuf;

use serde_json::{Map, Value as Json};

use super::reach::{Ref, Seg, overlaps, rule_path, rule_refs, show};
use super::rules::ModuleDef;

/// Top-level data keys tss-gate reads itself, or that the policy documents
/// as optional: `velocity` (spending limits) and `integrity` (decoding
/// tables) are checked key by key by the server's own loaders,
/// `embedded_risk_control_rules` is the node's YAML copied verbatim, and
/// `freeze` is the policy's own switch, absent meaning off.
pub const SERVER_READ: &[&str] = &[
    "velocity",
    "integrity",
    "embedded_risk_control_rules",
    "freeze",
];

/// A data file with the path its keys are merged at (`rego/tss/data.yaml`
/// holds `data.tss.…`).
#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: String,
    pub text: String,
    pub prefix: Vec<String>,
}

/// A data key no policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// Where the key is written, when it could be found.
    pub at: Option<(String, usize)>,
    pub path: Vec<String>,
    /// A read the key was probably meant for: its path and `file:line`.
    pub suggestion: Option<(String, String)>,
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some((file, line)) => write!(f, "{file}:{line}: ")?,
            None => write!(f, "data: ")?,
        }
        write!(
            f,
            "data key `data.{}` is read by no policy, so it has no effect",
            self.path.join(".")
        )?;
        if let Some((path, at)) = &self.suggestion {
            write!(f, " (did you mean `data.{path}`, which {at} reads?)")?;
        }
        Ok(())
    }
}

/// A policy read of a data key the data does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub file: String,
    pub line: u32,
    pub written: String,
    /// The whole read, e.g. `keysign.hot_wallets[_]`.
    pub path: Vec<Seg>,
    /// Where the read leaves the data: `missing` under `parent`.
    pub parent: Vec<String>,
    pub missing: String,
    /// A sibling key spelled almost alike.
    pub suggestion: Option<String>,
    /// Where a key of exactly that name is instead.
    pub elsewhere: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` reads `data.{}`, which the data does not have: ",
            self.file,
            self.line,
            self.written,
            show(&self.path)
        )?;
        if self.parent.is_empty() {
            write!(f, "there is no top-level key `{}`", self.missing)?;
        } else {
            write!(
                f,
                "`data.{}` has no key `{}`",
                self.parent.join("."),
                self.missing
            )?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        if let Some(e) = &self.elsewhere {
            write!(
                f,
                " (`{}` is at `data.{e}`: is it indented under the wrong key?)",
                self.missing
            )?;
        }
        Ok(())
    }
}

/// What one check found.
#[derive(Debug, Default)]
pub struct Findings {
    pub unread: Vec<Unread>,
    pub missing: Vec<Missing>,
}

/// The data files among a policy set's files, each with the path its keys
/// were merged at: the shortest tail of its directory under which `data`
/// holds every top-level key of the file (OPA's convention, see
/// [`crate::policy`]; data files given in the config sit at the root).
pub fn data_files(files: &[PathBuf], data: &Json) -> Vec<DataFile> {
    let mut out = Vec::new();
    for p in files {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(p) else {
            continue;
        };
        let parsed: Option<Json> = if ext == "json" {
            serde_json::from_str(&text).ok()
        } else {
            serde_yaml_ng::from_str(&text).ok()
        };
        let keys: Vec<String> = parsed
            .as_ref()
            .and_then(Json::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let dirs: Vec<String> = p
            .parent()
            .map(|d| {
                d.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let prefix = (0..=dirs.len())
            .map(|k| dirs[dirs.len() - k..].to_vec())
            .find(|prefix| {
                let node = prefix.iter().try_fold(data, |n, k| n.get(k));
                node.and_then(Json::as_object)
                    .is_some_and(|o| keys.iter().all(|k| o.contains_key(k)))
            })
            .unwrap_or_default();
        out.push(DataFile {
            path: p.display().to_string(),
            text,
            prefix,
        });
    }
    out
}

/// Checks the non-test `modules` against `data`.
pub fn check(modules: &[ModuleDef], data: &Json, files: &[DataFile]) -> Findings {
    let policies: Vec<&ModuleDef> = modules
        .iter()
        .filter(|m| !super::reach::is_test(&m.file))
        .collect();
    let rule_paths: Vec<Vec<Seg>> = policies
        .iter()
        .flat_map(|m| m.rules.iter().map(|r| rule_path(m, r)))
        .collect();
    let mut reads: Vec<(&ModuleDef, Ref)> = Vec::new();
    for m in &policies {
        for r in &m.rules {
            for rf in rule_refs(m, &r.text, r.line) {
                if rf.explicit && !rf.with_target {
                    reads.push((m, rf));
                }
            }
        }
    }
    let guarded: Vec<Vec<String>> = reads
        .iter()
        .filter(|(_, r)| r.presence_test)
        .map(|(_, r)| names(&r.path))
        .collect();
    let packages: Vec<Vec<Seg>> = policies
        .iter()
        .map(|m| {
            m.package
                .split('.')
                .map(|s| Seg::Name(s.to_owned()))
                .collect()
        })
        .collect();
    let mut findings = Findings::default();
    for (m, r) in &reads {
        // A reference that can name a rule, or anything inside a package
        // (an undefined rule), reads the policy, not data.
        let in_package = packages
            .iter()
            .any(|p| p.len() <= r.path.len() && overlaps(p, &r.path));
        if in_package || rule_paths.iter().any(|p| overlaps(p, &r.path)) {
            continue;
        }
        if let Some(f) = missing(data, m, r, &guarded) {
            findings.missing.push(f);
        }
    }
    findings
        .missing
        .sort_by(|a, b| (&a.file, a.line, &a.written).cmp(&(&b.file, b.line, &b.written)));
    findings
        .missing
        .dedup_by(|a, b| (&a.file, a.line, &a.path) == (&b.file, b.line, &b.path));

    let read_paths: Vec<&[Seg]> = reads.iter().map(|(_, r)| r.path.as_slice()).collect();
    if let Some(root) = data.as_object() {
        let mut keys = Vec::new();
        unread(root, &mut Vec::new(), &read_paths, &packages, &mut keys);
        for path in keys {
            let suggestion = meant_for(&path, &findings.missing, &reads);
            findings.unread.push(Unread {
                at: locate(files, &path),
                path,
                suggestion,
            });
        }
    }
    findings
}

/// The leading names of a path, up to its first unknown key.
fn names(path: &[Seg]) -> Vec<String> {
    path.iter()
        .map_while(|s| match s {
            Seg::Name(n) => Some(n.clone()),
            Seg::Any => None,
        })
        .collect()
}

/// Where read `r` leaves the data, unless that is expected.
fn missing(data: &Json, m: &ModuleDef, r: &Ref, guarded: &[Vec<String>]) -> Option<Missing> {
    let mut node = data;
    let mut parent: Vec<String> = Vec::new();
    for (i, seg) in r.path.iter().enumerate() {
        let Seg::Name(n) = seg else { return None };
        // Arrays and scalars: `.field` of them is not a data key.
        let obj = node.as_object()?;
        match obj.get(n) {
            Some(next) => {
                node = next;
                parent.push(n.clone());
            }
            None => {
                if parent.is_empty() && SERVER_READ.contains(&n.as_str()) {
                    return None;
                }
                let depth = parent.len() + 1;
                let here: Vec<String> = parent.iter().cloned().chain([n.clone()]).collect();
                if guarded
                    .iter()
                    .any(|g| g.len() >= depth && g[..depth] == here[..])
                {
                    return None;
                }
                let suggestion = closest(obj, n);
                let elsewhere = find_key(data, n, &parent);
                // A lookup by a computed key (`data.keysign.soft_caps[id]`)
                // in a table the data lacks reads as an empty table: the
                // way optional tables are written. Only a sign that the
                // table is there under another name or place makes it a
                // mistake (and the key there is unread).
                let lookup = r.path.get(i + 1) == Some(&Seg::Any);
                if lookup && suggestion.is_none() && elsewhere.is_none() {
                    return None;
                }
                return Some(Missing {
                    file: m.file.clone(),
                    line: r.line,
                    written: r.written.clone(),
                    path: r.path.clone(),
                    suggestion,
                    elsewhere,
                    parent,
                    missing: n.clone(),
                });
            }
        }
    }
    None
}

/// A key of `obj` spelled almost like `n`.
fn closest(obj: &Map<String, Json>, n: &str) -> Option<String> {
    obj.keys()
        .map(|k| (strsim::damerau_levenshtein(k, n), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.clone())
}

/// The first path (breadth first, objects only) of a key named `n`, other
/// than under `not_under`.
fn find_key(data: &Json, n: &str, not_under: &[String]) -> Option<String> {
    let mut level: Vec<(Vec<String>, &Json)> = vec![(Vec::new(), data)];
    for _ in 0..8 {
        let mut next = Vec::new();
        for (path, node) in level {
            let Some(obj) = node.as_object() else {
                continue;
            };
            if obj.contains_key(n) && path != not_under {
                let mut p = path.clone();
                p.push(n.to_owned());
                return Some(p.join("."));
            }
            for (k, v) in obj {
                let mut p = path.clone();
                p.push(k.clone());
                next.push((p, v));
            }
        }
        level = next;
    }
    None
}

/// Collects into `out` the highest keys beneath `node` (at `at`) that no
/// read covers. Keys on the way to a package (`data.tss`) are the
/// policy's namespace: only the data beneath them is judged.
fn unread(
    node: &Map<String, Json>,
    at: &mut Vec<String>,
    reads: &[&[Seg]],
    packages: &[Vec<Seg>],
    out: &mut Vec<Vec<String>>,
) {
    for (k, v) in node {
        if at.is_empty() && SERVER_READ.contains(&k.as_str()) {
            continue;
        }
        at.push(k.clone());
        let here: Vec<Seg> = at.iter().cloned().map(Seg::Name).collect();
        let whole = reads
            .iter()
            .any(|r| r.len() <= here.len() && overlaps(r, &here));
        let deeper = reads
            .iter()
            .any(|r| r.len() > here.len() && overlaps(r, &here))
            || packages
                .iter()
                .any(|p| p.len() >= here.len() && overlaps(p, &here));
        if !whole {
            match v.as_object() {
                Some(obj) if deeper => unread(obj, at, reads, packages, out),
                // A read goes into an array or scalar: it is read.
                _ if deeper => {}
                _ => out.push(at.clone()),
            }
        }
        at.pop();
    }
}

/// The read an unread key was probably meant for: a missing read of the
/// same name (written elsewhere) or of a close name beside it, else a read
/// of a close name beside it.
fn meant_for(
    path: &[String],
    missing: &[Missing],
    reads: &[(&ModuleDef, Ref)],
) -> Option<(String, String)> {
    let key = path.last()?;
    let parent = &path[..path.len() - 1];
    let close =
        |a: &str, b: &str| a != b && strsim::damerau_levenshtein(a, b) <= 2.max(a.len() / 4);
    let same_name = missing.iter().find(|m| m.missing == *key);
    let beside = missing
        .iter()
        .find(|m| m.parent == parent && close(&m.missing, key));
    if let Some(m) = same_name.or(beside) {
        let mut p = m.parent.clone();
        p.push(m.missing.clone());
        return Some((p.join("."), format!("{}:{}", m.file, m.line)));
    }
    reads.iter().find_map(|(m, r)| {
        let n = names(&r.path);
        (n.len() > parent.len() && n[..parent.len()] == *parent && close(&n[parent.len()], key))
            .then(|| {
                (
                    n[..=parent.len()].join("."),
                    format!("{}:{}", m.file, r.line),
                )
            })
    })
}

/// The data file and line where key `path` is written.
fn locate(files: &[DataFile], path: &[String]) -> Option<(String, usize)> {
    files.iter().find_map(|f| {
        let rel = path.strip_prefix(f.prefix.as_slice())?;
        locate_in(&f.text, rel).map(|line| (f.path.clone(), line))
    })
}

/// 1-based line of key `path` in a YAML (or pretty-printed JSON) text, by
/// indentation: each key must sit inside the block of the one before. A
/// key that cannot be found beneath a found parent (flow style) gives the
/// parent's line; None when the first key is not at the top level.
fn locate_in(text: &str, path: &[String]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('-') {
            return None;
        }
        let (k, _) = t.split_once(':')?;
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        Some((indent, k.to_owned()))
    };
    let root = lines.iter().find_map(|l| key_of(l))?.0;
    let mut found: Option<(usize, usize)> = None; // (line index, indent)
    for seg in path {
        let (from, parent_indent) = match found {
            Some((i, ind)) => (i + 1, Some(ind)),
            None => (0, None),
        };
        let mut child_indent = None;
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().skip(from) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let indent = l.len() - t.len();
            if let Some(p) = parent_indent
                && indent <= p
            {
                break;
            }
            let Some((ind, k)) = key_of(l) else {
                continue;
            };
            let want = match parent_indent {
                None => root,
                Some(_) => *child_indent.get_or_insert(ind),
            };
            if ind == want && k == *seg {
                hit = Some((i, ind));
                break;
            }
        }
        match hit {
            Some(h) => found = Some(h),
            None => return found.map(|(i, _)| i + 1),
        }
    }
    found.map(|(i, _)| i + 1)
}

/// The data of a set and its files' locations, for [`check`].
pub fn check_set(modules: &[ModuleDef], data: &Json, files: &[PathBuf]) -> Findings {
    check(modules, data, &data_files(files, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn modules(files: &[(&str, &str)]) -> Vec<ModuleDef> {
        let mut e = regorus::Engine::new();
        e.set_rego_v0(false);
        for (p, t) in files {
            e.add_policy((*p).into(), (*t).into()).expect("parses");
        }
        crate::testing::rules::modules(&mut e)
    }

    const YAML: &str = "# comment\nkeysign:\n  allowed_token_ids: [ETH]\n  caps:\n    ETH: \"5\"\n  dests:\n    ETH:\n      \"0xab\": true\nhot_wallets:\n  - w1\nfreeze:\n  keysign: false\n";

    fn data() -> Json {
        serde_yaml_ng::from_str(YAML).unwrap()
    }

    #[test]
    fn keys_are_located_by_indentation() {
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(locate_in(YAML, &p("hot_wallets")), Some(9));
        assert_eq!(locate_in(YAML, &p("keysign.caps.ETH")), Some(5));
        assert_eq!(locate_in(YAML, &p("keysign.dests.ETH.0xab")), Some(8));
        // Not a top-level key: `ETH` only appears nested.
        assert_eq!(locate_in(YAML, &p("ETH")), None);
        // Flow style: the parent's line.
        assert_eq!(locate_in(YAML, &p("keysign.allowed_token_ids.x")), Some(3));
        let json_text = "{\n  \"a\": {\n    \"b\": 1\n  }\n}\n";
        assert_eq!(locate_in(json_text, &p("a.b")), Some(3));
    }

    #[test]
    fn a_dedented_key_is_unread_and_its_read_is_missing() {
        let ms = modules(&[(
            "rego/tss/keysign/hot.rego",
            "package tss.keysign\n\nhot(w) if w in data.keysign.hot_wallets\n\ncap := data.keysign.caps[input.t]\n\nd if data.keysign.dests[input.c][input.a]\n\nt if input.t in data.keysign.allowed_token_ids\n",
        )]);
        let files = vec![DataFile {
            path: "rego/data.yaml".into(),
            text: YAML.into(),
            prefix: Vec::new(),
        }];
        let f = check(&ms, &data(), &files);
        let missing: Vec<String> = f.missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            missing,
            vec![
                "rego/tss/keysign/hot.rego:3: `data.keysign.hot_wallets` reads `data.keysign.hot_wallets`, which the data does not have: `data.keysign` has no key `hot_wallets` (`hot_wallets` is at `data.hot_wallets`: is it indented under the wrong key?)"
            ]
        );
        let unread: Vec<String> = f.unread.iter().map(ToString::to_string).collect();
        assert_eq!(
            unread,
            vec![
                "rego/data.yaml:9: data key `data.hot_wallets` is read by no policy, so it has no effect (did you mean `data.keysign.hot_wallets`, which rego/tss/keysign/hot.rego:3 reads?)"
            ]
        );
    }

    #[test]
    fn misspelled_keys_get_a_did_you_mean_on_both_sides() {
        let ms = modules(&[(
            "p.rego",
            "package tss.keysign\n\nimport data.keysign as ks\n\nc := ks.capz[input.t]\n",
        )]);
        let files = vec![DataFile {
            path: "rego/data.yaml".into(),
            text: YAML.into(),
            prefix: Vec::new(),
        }];
        let f = check(&ms, &data(), &files);
        assert_eq!(f.missing.len(), 1, "{:#?}", f.missing);
        let m = f.missing[0].to_string();
        assert!(
            m.starts_with("p.rego:5: `ks.capz[input.t]` reads `data.keysign.capz[_]`")
                && m.contains("did you mean `caps`?"),
            "{m}"
        );
        let unread: Vec<String> = f.unread.iter().map(ToString::to_string).collect();
        assert!(
            unread.contains(
                &"rego/data.yaml:4: data key `data.keysign.caps` is read by no policy, so it has no effect (did you mean `data.keysign.capz`, which p.rego:5 reads?)"
                    .to_owned()
            ),
            "{unread:#?}"
        );
    }

    #[test]
    fn dynamic_guarded_server_and_test_reads_raise_nothing() {
        let ms = modules(&[
            (
                "p.rego",
                "package tss.keysign\n\nk(x) := data.keysign[x]\n\nh if data.hot_wallets\n\nr := data.freeze.reason if is_string(data.freeze.reason)\n\nv := data.velocity.nope\n\nw := data.integrity.anything\n\ncfg := object.get(data.optional, \"a\", 1)\n\nq := data.optional.b\n\nsoft := data.keysign.soft_caps[input.id]\n",
            ),
            (
                "p_test.rego",
                "package tss.keysign_test\n\nt if data.keysign.only_tests\n",
            ),
        ]);
        let f = check(&ms, &data(), &[]);
        assert!(f.missing.is_empty(), "{:#?}", f.missing);
        assert!(f.unread.is_empty(), "{:#?}", f.unread);
        // Without the dynamic read, every keysign key is unread, at `data:`
        // when no file is known.
        let ms = modules(&[("p.rego", "package tss.keysign\n\nh if data.hot_wallets\n")]);
        let f = check(&ms, &data(), &[]);
        let unread: Vec<String> = f.unread.iter().map(ToString::to_string).collect();
        assert_eq!(
            unread,
            vec!["data: data key `data.keysign` is read by no policy, so it has no effect"]
        );
    }

    #[test]
    fn nested_data_files_are_located_under_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("tss/keysign");
        std::fs::create_dir_all(&nested).unwrap();
        let file = nested.join("data.yaml");
        std::fs::write(&file, "extra:\n  flag: true\n").unwrap();
        let data = json!({"tss": {"keysign": {"extra": {"flag": true}}}});
        let files = data_files(std::slice::from_ref(&file), &data);
        assert_eq!(files[0].prefix, vec!["tss", "keysign"]);
        let ms = modules(&[("p.rego", "package tss.keysign\n\nx := 1\n")]);
        let f = check(&ms, &data, &files);
        assert_eq!(f.unread.len(), 1, "{:#?}", f.unread);
        assert_eq!(
            f.unread[0].at,
            Some((file.display().to_string(), 1)),
            "{}",
            f.unread[0]
        );
    }

    #[test]
    fn the_shipped_library_reads_every_data_key_it_has_and_has_every_key_it_reads() {
        let set = crate::policy::PolicySet::load(&crate::policy::PolicyOptions {
            dir: "rego".into(),
            entrypoint: crate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(1),
        })
        .expect("the shipped library loads");
        let mut engine = set.engine();
        let ms = crate::testing::rules::modules(&mut engine);
        let data = serde_json::to_value(engine.get_data()).unwrap();
        let f = check_set(&ms, &data, &set.files);
        assert!(f.missing.is_empty(), "{:#?}", f.missing);
        assert!(f.unread.is_empty(), "{:#?}", f.unread);
    }
}
