//! The architecture invariants of DESIGN.md ("Layers and the rules between them"), checked
//! on the real workspace. Every checker is a plain function over its inputs (cargo metadata
//! JSON, file text) and is also fed a synthetic violation, to show that it can fail.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

/// Aggregate root of each context, mirroring DESIGN.md: `strata.<ctx>.v1.<Root>Service`.
const ROOTS: &[(&str, &str)] = &[
    ("catalog", "Product"),
    ("identity", "Account"),
    ("inventory", "StockItem"),
    ("ordering", "Order"),
];
/// Crates the pure domain module must not name: I/O and transport.
const IO_CRATES: &str = "sqlx tonic prost prost_types axum tokio hyper reqwest";
/// `std` modules that do I/O.
const IO_STD: &str = "fs net process";
/// Proto packages of shared value types (`proto/strata/<name>/v1`): they belong
/// to no context, declare no service, and any context may use them.
const SHARED_PROTO_PACKAGES: &str = "type";
/// Items of `strata_proto` that belong to no context, which any context may use:
/// the shared type packages and the descriptor set.
const SHARED_PROTO_ITEMS: &str = "self FILE_DESCRIPTOR_SET type";

fn listed(list: &str, word: &str) -> bool {
    list.split(' ').any(|w| w == word)
}

// ------------------------------------------------------------------ rule 1: crates

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    Ctx,
    App,
    /// The kernel and the shared store: what every context builds on.
    Shared,
    /// What the application services share (services/edge).
    Edge,
    /// The data service process, hosting contexts.
    Host,
    /// Generated proto code, the RPC stack, the testkit, the bench.
    Other,
}
use Layer::{App, Ctx, Edge, Host, Shared};

/// The layer of a package, from its manifest directory relative to the workspace root.
fn layer(rel_dir: &str) -> Layer {
    match rel_dir {
        "domain/kernel" | "domain/store" => Shared,
        "services/rpc" => Layer::Other,
        "services/edge" => Edge,
        "services/data-service" => Host,
        _ if rel_dir.starts_with("domain/") => Ctx,
        _ if rel_dir.starts_with("services/") => App,
        _ => Layer::Other,
    }
}

/// Workspace packages of `metadata` by name: (layer, manifest dir relative to the root).
fn packages(metadata: &Value) -> HashMap<&str, (Layer, String)> {
    let root = Path::new(metadata["workspace_root"].as_str().unwrap());
    let mut out = HashMap::new();
    for p in metadata["packages"].as_array().unwrap() {
        let manifest = Path::new(p["manifest_path"].as_str().unwrap());
        let dir = manifest.parent().unwrap().strip_prefix(root).unwrap();
        let dir = dir.to_string_lossy().into_owned();
        out.insert(p["name"].as_str().unwrap(), (layer(&dir), dir));
    }
    out
}

/// Rule 1 over `cargo metadata --no-deps` output: contexts and application services stay
/// out of each other's way. dev-dependencies are exempt (the testkit is one).
fn check_dependencies(metadata: &Value) -> Vec<String> {
    let pkgs = packages(metadata);
    let mut errors = Vec::new();
    for p in metadata["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let (from, dir) = &pkgs[name];
        for dep in p["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let kind = dep["kind"].as_str().unwrap_or("normal");
            let Some((to, dep_dir)) = pkgs.get(dep_name).filter(|_| kind != "dev") else {
                continue;
            };
            let rule = match (from, to) {
                (Ctx, Ctx) => "a context crate never depends on another context crate",
                (Ctx | Host, App | Edge) => "the data layer never depends on the application layer",
                (App, Ctx) => {
                    "an application service depends on proto, rpc and the edge, never on a context crate"
                }
                (App, App) => "an application service never depends on another application service",
                (App, Shared | Host) => "an application service depends on proto, rpc and the edge only",
                (Edge, Ctx | App | Shared | Host) => "the shared edge depends on proto and rpc only",
                (Shared, Ctx | App | Edge) => {
                    "the kernel and the shared store never depend on a context or an application service"
                }
                _ => continue,
            };
            errors.push(format!(
                "`{name}` ({dir}) has a {kind} dependency on `{dep_name}` ({dep_dir}): rule broken: {rule}"
            ));
        }
    }
    errors
}

// ------------------------------------------------------------------ token scanner

/// A token of Rust or proto source and its line: an identifier, `::` or one punctuation char.
type Tok = (String, usize);

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of `src`, without comments (line, doc, block), string and char literals.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < c.len() {
        let start = i;
        match (at(i), at(i + 1)) {
            ('/', '/') => i = (i..c.len()).find(|&j| at(j) == '\n').unwrap_or(c.len()),
            ('/', '*') => {
                i = (i + 2..c.len())
                    .find(|&j| at(j) == '*' && at(j + 1) == '/')
                    .map_or(c.len(), |j| j + 2)
            }
            ('"', _) => {
                i += 1;
                while i < c.len() && at(i) != '"' {
                    i += if at(i) == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            ('\'', '\\') => {
                i = (i + 3..c.len())
                    .find(|&j| at(j) == '\'')
                    .map_or(c.len(), |j| j + 1)
            }
            ('\'', _) if at(i + 2) == '\'' => i += 3,
            (':', ':') => {
                out.push(("::".to_owned(), line));
                i += 2;
            }
            // A raw identifier (`r#type`) is the identifier itself.
            ('r', '#') if is_ident_char(at(i + 2)) => {
                i = (i + 2..=c.len()).find(|&j| !is_ident_char(at(j))).unwrap();
                out.push((c[start + 2..i].iter().collect(), line));
            }
            (ch, _) if is_ident_char(ch) => {
                i = (i..=c.len()).find(|&j| !is_ident_char(at(j))).unwrap();
                out.push((c[start..i].iter().collect(), line));
            }
            (ch, _) if ch.is_whitespace() => i += 1,
            (ch, _) => {
                out.push((ch.to_string(), line));
                i += 1;
            }
        }
        i = i.min(c.len());
        line += c[start..i].iter().filter(|&&ch| ch == '\n').count();
    }
    out
}

/// The segments right after `toks[i] ::`: one identifier, or the head of each item of a
/// `{…}` use group (`std::{fmt, fs::File}` → `fmt`, `fs`).
fn children(toks: &[Tok], i: usize) -> Vec<&Tok> {
    let text = |j: usize| toks.get(j).map_or("", |t| t.0.as_str());
    match (text(i + 1), text(i + 2)) {
        ("::", "{") => {}
        ("::", _) => return toks.get(i + 2).into_iter().collect(),
        _ => return Vec::new(),
    }
    let (mut depth, mut heads) = (0, Vec::new());
    for (j, t) in toks.iter().enumerate().skip(i + 2) {
        match t.0.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ if depth == 1 && matches!(text(j - 1), "{" | ",") => heads.push(t),
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    heads
}

// ------------------------------------------------------------------ rule 2: pure domain

/// Rule 2 over one file of a context's pure domain module: no I/O or transport path.
fn check_pure_domain(file: &str, src: &str) -> Vec<String> {
    let toks = tokenize(src);
    let mut found = Vec::new();
    for (i, (word, line)) in toks.iter().enumerate() {
        let prev = if i > 0 { toks[i - 1].0.as_str() } else { "" };
        let next = toks.get(i + 1).map_or("", |t| t.0.as_str());
        if listed(IO_CRATES, word) && (next == "::" || matches!(prev, "use" | "crate")) {
            found.push((*line, word.clone()));
        } else if word == "std" {
            let io = children(&toks, i).into_iter().filter(|c| listed(IO_STD, &c.0));
            found.extend(io.map(|(module, line)| (*line, format!("std::{module}"))));
        }
    }
    let rule = "the pure domain module does no I/O and imports no I/O or transport crate";
    found
        .into_iter()
        .map(|(line, path)| format!("{file}:{line}: references `{path}`: rule broken: {rule}"))
        .collect()
}

// ------------------------------------------------------------------ rule 2b: channels

/// Rule 2b over one source file of an application service or the edge: it makes
/// no gRPC channel of its own; channels are made in `services/rpc` only.
fn check_channels(file: &str, src: &str) -> Vec<String> {
    let toks = tokenize(src);
    toks.windows(3)
        .filter(|w| {
            (w[0].0 == "Endpoint" && w[1].0 == "::")
                || (w[0].0 == "Channel"
                    && w[1].0 == "::"
                    && matches!(w[2].0.as_str(), "from_shared" | "from_static" | "builder" | "balance_list" | "balance_channel"))
        })
        .map(|w| {
            format!(
                "{file}:{}: makes a channel (`{}{}{}`): rule broken: application services reach data services \
                 through services/rpc (strata_rpc::client::channel), the one place channels are made",
                w[0].1, w[0].0, w[1].0, w[2].0
            )
        })
        .collect()
}

// ------------------------------------------------------------------ rule 3: gRPC surface

/// Rule 3 over the `.proto` files `(path, text)` of package directory `dir` of context
/// `ctx`: exactly one service, `<Root>Service`.
fn check_proto_services(ctx: &str, dir: &str, files: &[(String, String)]) -> Vec<String> {
    let shared = listed(SHARED_PROTO_PACKAGES, ctx);
    let root = ROOTS.iter().find(|(c, _)| *c == ctx).map(|(_, root)| *root);
    if !shared && root.is_none() {
        return vec![format!(
            "{dir}: unknown context `{ctx}`: add its aggregate root to ROOTS in \
             tests/tests/architecture.rs (mirroring DESIGN.md) so its gRPC surface is checked"
        )];
    }
    let mut services = Vec::new();
    for (path, text) in files {
        for w in tokenize(text)
            .windows(3)
            .filter(|w| w[0].0 == "service" && w[2].0 == "{")
        {
            services.push((w[1].0.clone(), format!("{} ({path}:{})", w[1].0, w[1].1)));
        }
    }
    let found: Vec<_> = services.iter().map(|(_, at)| at.clone()).collect();
    let Some(root) = root else {
        if found.is_empty() {
            return Vec::new();
        }
        return vec![format!(
            "{dir}: shared type package `{ctx}` declares service(s) [{}]: rule broken: a shared \
             type package holds value types only",
            found.join(", ")
        )];
    };
    let expected = format!("{root}Service");
    if let [(name, _)] = services.as_slice()
        && *name == expected
    {
        return Vec::new();
    }
    vec![format!(
        "{dir}: context `{ctx}` declares {} service(s) [{}]: rule broken: a context exposes exactly \
         one gRPC service, `{expected}`, named after its aggregate root",
        found.len(),
        found.join(", ")
    )]
}

/// Rule 3 over one source file of context `ctx`: it uses only its own generated code.
fn check_proto_ownership(ctx: &str, file: &str, src: &str) -> Vec<String> {
    let toks = tokenize(src);
    let mut errors = Vec::new();
    for (i, _) in toks.iter().enumerate().filter(|(_, t)| t.0 == "strata_proto") {
        for (other, line) in children(&toks, i) {
            if other != ctx && !listed(SHARED_PROTO_ITEMS, other) {
                errors.push(format!(
                    "{file}:{line}: context `{ctx}` references `strata_proto::{other}`: rule broken: \
                     a context uses only the generated code of its own proto package"
                ));
            }
        }
    }
    errors
}

// ------------------------------------------------------------------ rule 4: own tables

/// Tables every context keeps in its own schema, created by the shared store:
/// the same names in every context, never another context's.
const SHARED_TABLES: &str = "outbox idempotency";

/// The SQL of a source file: its string literals that look like SQL (Rust), or
/// the file itself without `--` comments (a migration).
fn sql_of(path: &str, text: &str) -> Vec<String> {
    if path.ends_with(".sql") {
        let code: Vec<&str> = text.lines().map(|l| l.split("--").next().unwrap_or("")).collect();
        return vec![code.join("\n")];
    }
    let c: Vec<char> = text.chars().collect();
    let (mut i, mut out) = (0, Vec::new());
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            i = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
        } else if c[i] == '\'' {
            // A char literal or a lifetime: never SQL, and may hold a quote.
            i += if c.get(i + 2) == Some(&'\'') { 3 } else { 1 };
        } else if c[i] == '"' {
            let start = i + 1;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            let literal: String = c[start..i.min(c.len())].iter().collect();
            let lower = literal.to_lowercase();
            if ["select ", "insert ", "update ", "delete ", "create ", "alter "]
                .iter()
                .any(|k| lower.contains(k))
            {
                out.push(lower);
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The tables a context's migrations create.
fn tables_created(migrations: &[(String, String)]) -> Vec<String> {
    let mut tables = Vec::new();
    for (path, text) in migrations {
        for sql in sql_of(path, text) {
            let words: Vec<&str> = sql
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                .filter(|w| !w.is_empty())
                .collect();
            for w in words.windows(3) {
                if w[0].eq_ignore_ascii_case("create") && w[1].eq_ignore_ascii_case("table") {
                    let name = if w[2].eq_ignore_ascii_case("if") {
                        None
                    } else {
                        Some(w[2])
                    };
                    tables.extend(name.map(|n| n.rsplit('.').next().unwrap_or(n).to_lowercase()));
                }
            }
            for w in words.windows(6) {
                if w[0].eq_ignore_ascii_case("create")
                    && w[2..5]
                        .iter()
                        .map(|x| x.to_lowercase())
                        .eq(["if", "not", "exists"])
                {
                    tables.push(w[5].to_lowercase());
                }
            }
        }
    }
    tables.retain(|t| !listed(SHARED_TABLES, t));
    tables.sort();
    tables.dedup();
    tables
}

/// Rule 4 over the SQL files and sources `(path, text)` of context `ctx`: its
/// SQL names no other context's schema (`inventory.stock_item`) or table.
fn check_own_tables(ctx: &str, others: &[(String, Vec<String>)], files: &[(String, String)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, text) in files {
        for sql in sql_of(path, text) {
            for word in sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
                for (other, tables) in others.iter().filter(|(o, _)| o != ctx) {
                    let schema = word.strip_prefix(&format!("{other}.")).is_some();
                    if schema || tables.iter().any(|t| t == word) {
                        errors.push(format!(
                            "{path}: context `{ctx}` names `{word}` of context `{other}`: rule broken: a \
                             context's SQL touches only its own schema and tables"
                        ));
                    }
                }
            }
        }
    }
    errors.sort();
    errors.dedup();
    errors
}

// ------------------------------------------------------------------ the real workspace

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version=1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo metadata: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The workspace root and `(context, crate directory)` of every context crate.
fn contexts() -> (PathBuf, Vec<(String, PathBuf)>) {
    let meta = metadata();
    let root = PathBuf::from(meta["workspace_root"].as_str().unwrap());
    let ctx = |dir: &str| (dir.trim_start_matches("domain/").to_owned(), root.join(dir));
    let mut out: Vec<_> = packages(&meta)
        .into_values()
        .filter(|p| p.0 == Ctx)
        .map(|p| ctx(&p.1))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no context crate found under domain/");
    (root, out)
}

/// `(path, text)` of the files under `dir` (recursively) with extension `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in fs::read_dir(dir).into_iter().flatten().map(|e| e.unwrap().path()) {
        if path.is_dir() {
            out.extend(files(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push((path.display().to_string(), fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn assert_none(errors: Vec<String>) {
    assert!(errors.is_empty(), "broken:\n{}", errors.join("\n"));
}

#[test]
fn workspace_crates_respect_the_layers() {
    assert_none(check_dependencies(&metadata()));
}

#[test]
fn application_services_make_no_channels_of_their_own() {
    let meta = metadata();
    let root = PathBuf::from(meta["workspace_root"].as_str().unwrap());
    let dirs: Vec<_> = packages(&meta)
        .into_values()
        .filter(|p| matches!(p.0, App | Edge))
        .map(|p| root.join(p.1).join("src"))
        .collect();
    assert!(
        dirs.len() >= 3,
        "storefront, backoffice and the edge are checked: {dirs:?}"
    );
    let mut errors = Vec::new();
    for dir in dirs {
        for (file, text) in files(&dir, "rs") {
            errors.extend(check_channels(&file, &text));
        }
    }
    assert_none(errors);
}

#[test]
fn channel_checker_reports_channels_made_by_hand() {
    let src = "use tonic::transport::Channel;\n// Endpoint::from_static(x)\nlet a = Endpoint::from_shared(s)?;\n\
               let b = Channel::from_static(\"http://x\");\nlet c: Channel = channel(addr)?;";
    let errors = check_channels("a.rs", src);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("a.rs:3: makes a channel (`Endpoint::from_shared`)"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("a.rs:4: makes a channel (`Channel::from_static`)"),
        "{}",
        errors[1]
    );
}

#[test]
fn pure_domain_modules_do_no_io() {
    let mut errors = Vec::new();
    for (ctx, dir) in contexts().1 {
        let mut sources = files(&dir.join("src/domain"), "rs");
        let single = dir.join("src/domain.rs");
        sources.extend(fs::read_to_string(&single).map(|s| (single.display().to_string(), s)));
        if sources.is_empty() {
            errors.push(format!(
                "{}: context `{ctx}` has no pure domain module (src/domain/)",
                dir.display()
            ));
        }
        for (file, text) in sources {
            errors.extend(check_pure_domain(&file, &text));
        }
    }
    assert_none(errors);
}

#[test]
fn each_context_exposes_one_root_service() {
    let packages: Vec<_> = fs::read_dir(contexts().0.join("proto/strata"))
        .unwrap()
        .map(|e| e.unwrap().path().join("v1"))
        .filter(|p| p.is_dir())
        .collect();
    assert!(!packages.is_empty(), "no proto/strata/<ctx>/v1/ found");
    let mut errors = Vec::new();
    for package in packages {
        let ctx = package.parent().unwrap().file_name().unwrap().to_string_lossy();
        let dir = package.display().to_string();
        errors.extend(check_proto_services(&ctx, &dir, &files(&package, "proto")));
    }
    assert_none(errors);
}

#[test]
fn contexts_use_only_their_own_generated_code() {
    let mut errors = Vec::new();
    for (ctx, dir) in contexts().1 {
        for (file, text) in files(&dir.join("src"), "rs") {
            errors.extend(check_proto_ownership(&ctx, &file, &text));
        }
    }
    assert_none(errors);
}

#[test]
fn contexts_touch_only_their_own_tables() {
    let (root, contexts) = contexts();
    let owned: Vec<(String, Vec<String>)> = contexts
        .iter()
        .map(|(ctx, _)| {
            (
                ctx.clone(),
                tables_created(&files(&root.join("migrations").join(ctx), "sql")),
            )
        })
        .collect();
    for (ctx, tables) in &owned {
        assert!(
            !tables.is_empty(),
            "context `{ctx}` creates no table of its own in migrations/{ctx}/"
        );
    }
    let mut errors = Vec::new();
    for (ctx, dir) in &contexts {
        let mut sources = files(&dir.join("src"), "rs");
        sources.extend(files(&root.join("migrations").join(ctx), "sql"));
        errors.extend(check_own_tables(ctx, &owned, &sources));
    }
    assert_none(errors);
}

// ------------------------------------------------------------------ the checkers can fail

fn package(name: &str, dir: &str, deps: &[(&str, Option<&str>)]) -> Value {
    json!({ "name": name, "manifest_path": format!("/ws/{dir}/Cargo.toml"),
            "dependencies": deps.iter().map(|(n, k)| json!({ "name": n, "kind": k })).collect::<Vec<_>>() })
}

/// Asserts that `errors` is exactly one report, and that it contains `needle`.
fn assert_one(errors: Vec<String>, needle: &str) {
    let ok = errors.len() == 1 && errors[0].contains(needle);
    assert!(ok, "want one report with {needle:?}, got {errors:#?}");
}

#[test]
fn dependency_checker_reports_crossed_layers() {
    let (dev, build) = (Some("dev"), Some("build"));
    let meta = json!({ "workspace_root": "/ws", "packages": [
        package("strata-kernel", "domain/kernel", &[]),
        package("strata-store", "domain/store", &[("strata-kernel", None), ("strata-catalog", None)]),
        package("strata-rpc", "services/rpc", &[]),
        package("strata-identity", "domain/identity", &[("strata-kernel", None), ("strata-catalog", dev)]),
        package("strata-catalog", "domain/catalog", &[("strata-kernel", None), ("strata-identity", None)]),
        package("strata-backoffice", "services/backoffice", &[("strata-rpc", None), ("strata-identity", dev)]),
        package("strata-storefront", "services/storefront", &[("strata-catalog", None), ("strata-backoffice", build)]),
        package("strata-edge", "services/edge", &[("strata-rpc", None), ("strata-kernel", None)]),
        package("strata-data-service", "services/data-service", &[("strata-catalog", None), ("strata-edge", None)]),
        package("strata-admin", "services/admin", &[("strata-edge", None), ("strata-rpc", None), ("strata-store", None)]),
        package("strata-testkit", "tests", &[("strata-catalog", dev), ("strata-storefront", dev)]),
    ]});
    let errors = check_dependencies(&meta);
    assert_eq!(
        errors,
        [
            "`strata-store` (domain/store) has a normal dependency on `strata-catalog` (domain/catalog): rule broken: the kernel and the shared store never depend on a context or an application service",
            "`strata-catalog` (domain/catalog) has a normal dependency on `strata-identity` (domain/identity): rule broken: a context crate never depends on another context crate",
            "`strata-storefront` (services/storefront) has a normal dependency on `strata-catalog` (domain/catalog): rule broken: an application service depends on proto, rpc and the edge, never on a context crate",
            "`strata-storefront` (services/storefront) has a build dependency on `strata-backoffice` (services/backoffice): rule broken: an application service never depends on another application service",
            "`strata-edge` (services/edge) has a normal dependency on `strata-kernel` (domain/kernel): rule broken: the shared edge depends on proto and rpc only",
            "`strata-data-service` (services/data-service) has a normal dependency on `strata-edge` (services/edge): rule broken: the data layer never depends on the application layer",
            "`strata-admin` (services/admin) has a normal dependency on `strata-store` (domain/store): rule broken: an application service depends on proto, rpc and the edge only",
        ]
    );
}

#[test]
fn pure_domain_checker_reports_io_paths() {
    for (src, path) in [
        ("use sqlx::Row;", "sqlx"),
        ("fn f() { let _ = ::tokio::spawn(g()); }", "tokio"),
        ("#[derive(prost::Message)] struct A;", "prost"),
        ("use std::{fmt, fs::File};", "std::fs"),
        ("let s = std::net::TcpStream::connect(a);", "std::net"),
        ("extern crate reqwest;", "reqwest"),
        ("/* x */\n\nuse axum;", "axum"),
    ] {
        let line = src.lines().count();
        let want =
            format!("a.rs:{line}: references `{path}`: rule broken: the pure domain module does no I/O");
        assert_one(check_pure_domain("a.rs", src), &want);
    }
    let clean = "// use sqlx::Row;\n/// tokio::spawn(x)\n/* tonic::Status */\nuse std::fmt;\n\
                 let s = \"sqlx::query\\\" tokio::\"; let c = '\"'; let q = '\\'';\n\
                 use mysqlx::A; let tokio_like = 1; fn f<'a>(x: &'a str) {}";
    assert_none(check_pure_domain("clean.rs", clean));
}

#[test]
fn proto_checker_reports_wrong_services() {
    let check = |ctx, proto: &str| check_proto_services(ctx, "p", &[("a.proto".into(), proto.into())]);
    let two = "service ProductService {}\n// service Old {}\nservice PriceService {\n}";
    let want = "p: context `catalog` declares 2 service(s) [ProductService (a.proto:1), PriceService (a.proto:3)]: rule broken: a context exposes exactly one gRPC service, `ProductService`, named after its aggregate root";
    assert_one(check("catalog", two), want);
    assert_one(check("catalog", "message A {}"), "declares 0 service(s) []: rule");
    assert_one(check("ordering", "service OrderLine {}"), "`OrderService`, named");
    assert_one(check("shipping", "service Shipment {}"), "add its aggregate root");
    assert_none(check("catalog", "// service Old {}\nservice ProductService {}"));
    assert_none(check("type", "message Money {}"));
    assert_one(
        check("type", "service MoneyService {}"),
        "shared type package `type` declares",
    );
}

#[test]
fn ownership_checker_reports_other_contexts_generated_code() {
    let check = |src| check_proto_ownership("catalog", "grpc.rs", src);
    let rule = "rule broken: a context uses only the generated code of its own proto package";
    let want = format!("grpc.rs:1: context `catalog` references `strata_proto::identity`: {rule}");
    assert_one(check("use strata_proto::identity::v1 as pb;"), &want);
    let grouped = check("use strata_proto::{catalog::v1, ordering::v1};");
    assert_one(grouped, "`strata_proto::ordering`");
    assert_one(
        check("use strata_proto::r#ordering::v1;"),
        "`strata_proto::ordering`",
    );
    let own = "use strata_proto::catalog::v1 as pb; let d = strata_proto::FILE_DESCRIPTOR_SET; \
               let m: strata_proto::r#type::v1::Money;";
    assert_none(check(own));
}

#[test]
fn own_tables_checker_reports_another_contexts_schema_or_table() {
    let migrations = [(
        "m/0001.sql".to_owned(),
        "-- create table ignored (id int);\ncreate table stock_item (sku text);\n\
         create table if not exists outbox (position int);\ncreate table inventory.reservation_log (id int);"
            .to_owned(),
    )];
    assert_eq!(tables_created(&migrations), ["reservation_log", "stock_item"]);
    let others = vec![
        ("inventory".to_owned(), vec!["stock_item".to_owned()]),
        ("catalog".to_owned(), vec!["product".to_owned()]),
    ];
    let rule = "rule broken: a context's SQL touches only its own schema and tables";
    let src = |code: &str| vec![("store.rs".to_owned(), code.to_owned())];
    assert_one(
        check_own_tables(
            "catalog",
            &others,
            &src(r#"const Q: &str = "select on_hand from inventory.stock_item";"#),
        ),
        &format!("store.rs: context `catalog` names `inventory.stock_item` of context `inventory`: {rule}"),
    );
    assert_one(
        check_own_tables(
            "catalog",
            &others,
            &src(r#"let q = "update stock_item set on_hand = 0";"#),
        ),
        "names `stock_item` of context `inventory`",
    );
    // Its own tables, the shared ones, and prose that is not SQL are fine.
    let fine =
        r#"const A: &str = "select * from product join outbox on true"; let m = "stock_item is the word";"#;
    assert_none(check_own_tables("catalog", &others, &src(fine)));
}
