//! A Hugging Face hub id fetched into the usual HF cache, or found there: the cache folder,
//! token, endpoint and offline mode read from the variables huggingface_hub reads
//! ([`HubSettings`]), a proxy from those the hub client (ureq) reads, without `NO_PROXY`.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::source::listed_modules;

/// Files a model folder needs.
const REQUIRED: &[&str] = &["config.json", "vocab.txt", "model.safetensors"];
/// Files used when present (tokenizer settings, sentence-transformers pooling).
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "added_tokens.json",
    // What older sentence-transformers versions saved a DistilBERT's settings as.
    "sentence_distilbert_config.json",
];

fn place_locally_hint(id: &str) -> String {
    format!(
        "no local folder named '{id}' exists either; place the model files (config.json, vocab.txt, \
         model.safetensors, tokenizer files) in a folder and pass its path to --model"
    )
}

/// Where huggingface_hub keeps its files and what it authenticates with, read from the
/// variables it reads, so that Python and sentence-mtl share one cache and one login.
struct HubSettings {
    /// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`.
    cache: PathBuf,
    /// `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH` names, else
    /// `$HF_HOME/token` (what `huggingface-cli login` writes).
    token: Option<String>,
    endpoint: String,
    offline: bool,
}

impl HubSettings {
    fn from(var: impl Fn(&str) -> Option<String>) -> Self {
        let user_home = var("HOME").unwrap_or_default();
        // As huggingface_hub's `os.path.expanduser`: a leading `~` is the user's home.
        let path = |value: String| match value.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => PathBuf::from(format!("{user_home}{rest}")),
            _ => PathBuf::from(value),
        };
        // `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
        let home = var("HF_HOME").map(path).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(path);
            cache.unwrap_or_else(|| PathBuf::from(&user_home).join(".cache")).join("huggingface")
        });
        let cache = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")).map(path);
        let token_file = var("HF_TOKEN_PATH").map(path).unwrap_or_else(|| home.join("token"));
        let clean = |token: String| Some(token.trim().to_string()).filter(|t| !t.is_empty());
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| std::fs::read_to_string(token_file).ok())
            .and_then(clean)
            // huggingface_hub sends no token it was not given in the call: none here.
            .filter(|_| !is_true(var("HF_HUB_DISABLE_IMPLICIT_TOKEN")));
        Self {
            cache: cache.unwrap_or_else(|| home.join("hub")),
            token,
            endpoint: var("HF_ENDPOINT")
                .map_or_else(|| "https://huggingface.co".into(), |e| e.trim_end_matches('/').into()),
            offline: is_offline(var("HF_HUB_OFFLINE"), var("TRANSFORMERS_OFFLINE")),
        }
    }
}

pub fn fetch(id: &str) -> Result<PathBuf> {
    let hub = HubSettings::from(env);
    let cached = Cache::new(hub.cache.clone()).model(id.to_string());
    let endpoint = &hub.endpoint;
    let cached_folder = cached
        .get("config.json")
        .filter(|_| REQUIRED.iter().all(|f| cached.get(f).is_some()))
        .and_then(|config| config.parent().map(Path::to_path_buf));
    if let Some(folder) = cached_folder {
        if hub.offline || is_complete(&folder) {
            return Ok(folder);
        }
        return complete_cached(id, &hub, folder);
    }
    if hub.offline {
        bail!(
            "'{id}' is not in the Hugging Face cache ({}) and offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE); {}",
            hub.cache.display(),
            place_locally_hint(id)
        );
    }
    check_reachable(endpoint)
        .with_context(|| format!("cannot download '{id}' from {endpoint}; {}", place_locally_hint(id)))?;
    download(id, &hub, Repo::model(id.to_string()))
}

/// A cache that transformers filled (or a download cut short) lacks sentence-transformers
/// files, which change the embeddings: they are asked of the hub at the cached commit (main
/// may have moved since; the files must be the cached weights'). Where the hub cannot be
/// reached or does not answer (the commit gone, the model gated), the cached files serve as
/// they are, as they would offline.
fn complete_cached(id: &str, hub: &HubSettings, folder: PathBuf) -> Result<PathBuf> {
    let endpoint = &hub.endpoint;
    let lacking = format!("the cached '{id}' lacks its sentence-transformers files (modules.json and its modules')");
    let defaults = "without them, its pooling and normalisation are the defaults (HF_HUB_OFFLINE=1 skips this check)";
    if check_reachable(endpoint).is_err() {
        crate::stderrln!("note: {lacking}, and {endpoint} cannot be reached to fetch them; {defaults}");
        return Ok(folder);
    }
    let commit = folder.file_name().map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|| "main".into());
    match download(id, hub, Repo::with_revision(id.to_string(), RepoType::Model, commit)) {
        Ok(folder) => Ok(folder),
        Err(e) => {
            crate::stderrln!("note: {lacking}, and fetching them failed ({e:#}); {defaults}");
            Ok(folder)
        }
    }
}

/// Whether a cached snapshot has every file the model reads: `modules.json` (or the hub's
/// word that there is none) and the files of the modules it lists.
fn is_complete(snapshot: &Path) -> bool {
    let modules_known = snapshot.join("modules.json").is_file() || known_absent(snapshot, "modules.json");
    modules_known && module_files(snapshot).iter().all(|file| snapshot.join(file).is_file())
}

/// Downloads (or finds in the cache) `repo`'s files: the required ones, the optional ones it
/// has (recording those it has not, as huggingface_hub's `.no_exist/` does), and the files
/// of the modules its `modules.json` lists.
fn download(id: &str, hub: &HubSettings, repo: Repo) -> Result<PathBuf> {
    let endpoint = &hub.endpoint;
    let api = ApiBuilder::from_cache(Cache::new(hub.cache.clone()))
        .with_endpoint(endpoint.clone())
        .with_token(hub.token.clone())
        .with_progress(console_is_interactive())
        .build()
        .context("cannot set up the Hugging Face hub client")?;
    let repo = api.repo(repo);
    let mut folder = None;
    for file in REQUIRED {
        let local = repo.get(file).map_err(|e| {
            let hint = if *file == "model.safetensors" {
                " (only safetensors weights are loaded; pickled pytorch_model.bin is refused)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot download {file} of '{id}' from {endpoint}: {e}{hint}")
        })?;
        folder.get_or_insert_with(|| local.parent().expect("downloaded file has a folder").to_path_buf());
    }
    let folder = folder.expect("REQUIRED is not empty");
    for file in OPTIONAL {
        match repo.get(file) {
            // The model works without them; the answer is kept so that later runs need not ask.
            Err(e) if e.to_string().contains("status code 404") => record_absent(&folder, file),
            Err(e) if *file == "modules.json" => crate::stderrln!(
                "note: cannot download modules.json of '{id}' from {endpoint} ({e}); without it, its pooling and normalisation are the defaults"
            ),
            _ => {}
        }
    }
    for file in module_files(&folder) {
        if let Err(e) = repo.get(&file) {
            bail!("cannot download {file} of '{id}' from {endpoint}, which its modules.json lists: {e}");
        }
    }
    Ok(folder)
}

/// Where the hub's answer that `snapshot` has no `file` is kept: huggingface_hub's layout,
/// `<repo>/.no_exist/<commit>/<file>`, beside `<repo>/snapshots/<commit>/`.
fn absence_record(snapshot: &Path, file: &str) -> Option<PathBuf> {
    let commit = snapshot.file_name()?;
    Some(snapshot.parent()?.parent()?.join(".no_exist").join(commit).join(file))
}

fn known_absent(snapshot: &Path, file: &str) -> bool {
    absence_record(snapshot, file).is_some_and(|record| record.is_file())
}

/// Best effort: without the record, a later run asks the hub again.
fn record_absent(snapshot: &Path, file: &str) {
    if let Some(record) = absence_record(snapshot, file) {
        let _ = record.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(record, b"");
    }
}

/// The files of the Pooling and Dense modules a sentence-transformers `modules.json` in
/// `folder` lists (`1_Pooling/config.json`, `2_Dense/model.safetensors`), none when there
/// is none; paths that leave the folder are skipped.
fn module_files(folder: &Path) -> Vec<String> {
    let files = |kind: &str| -> &'static [&'static str] {
        match kind {
            "Pooling" => &["config.json"],
            "Dense" => &["config.json", "model.safetensors"],
            _ => &[],
        }
    };
    listed_modules(folder)
        .iter()
        .filter(|m| !m.is_root() && m.is_inside())
        .flat_map(|m| files(m.kind()).iter().map(move |file| format!("{}/{file}", m.path)))
        .collect()
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// huggingface_hub's reading: `HF_HUB_OFFLINE` (or, when it is unset, `TRANSFORMERS_OFFLINE`)
/// is true ([`is_true`]).
fn is_offline(hf_hub_offline: Option<String>, transformers_offline: Option<String>) -> bool {
    is_true(hf_hub_offline.or(transformers_offline))
}

/// huggingface_hub's reading of a switch variable: one of 1, ON, YES, TRUE in any case.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|v| ["1", "ON", "YES", "TRUE"].contains(&v.to_ascii_uppercase().as_str()))
}

/// The schemes of the proxy URLs the hub client (ureq) parses; it skips others.
const PROXY_SCHEMES: &[&str] = &["http", "socks4", "socks4a", "socks", "socks5"];

/// The variables the hub client (ureq) takes its proxy from, first set first.
const PROXY_VARIABLES: &[&str] = &["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

/// What the hub client connects to first: the endpoint's host and port, or the proxy's when
/// one is set (`[scheme://][user:password@]host[:port]`, port 80, or 1080 for SOCKS), with
/// the words that name it in a message.
fn first_hop(endpoint: &str, proxy: Option<(&str, String)>) -> (String, String) {
    let (scheme, rest, default_port) = match &proxy {
        Some((_, url)) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            (scheme, rest, if scheme.starts_with("socks") { 1080 } else { 80 })
        }
        None => {
            let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            (scheme, rest, if scheme == "http" { 80 } else { 443 })
        }
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let address = if host_port.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        host_port.to_string()
    } else {
        format!("{host_port}:{default_port}")
    };
    let named = match proxy {
        Some((variable, _)) => format!("the proxy {host_port} ({variable}, {scheme})"),
        None => host_port.to_string(),
    };
    (address, named)
}

/// Fails within seconds when the endpoint's host (or the proxy in between) cannot be
/// resolved or reached, instead of waiting for the OS's TCP timeout inside the HTTP client.
fn check_reachable(endpoint: &str) -> Result<()> {
    // As ureq: the first variable set (empty too) in a form it parses (no `https://`).
    let parsed = |url: &String| url.split_once("://").is_none_or(|(scheme, _)| PROXY_SCHEMES.contains(&scheme));
    let proxy = PROXY_VARIABLES.iter().find_map(|name| std::env::var(name).ok().filter(parsed).map(|url| (*name, url)));
    if let Some((name, url)) = &proxy {
        if url.trim().is_empty() {
            bail!("the proxy variable {name} is set but empty, and the hub client would connect through it; unset it or give it the proxy's address");
        }
    }
    let (address, host_port) = first_hop(endpoint, proxy);
    let addrs: Vec<_> =
        address.to_socket_addrs().with_context(|| format!("cannot resolve {host_port} (no network?)"))?.collect();
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(e).with_context(|| format!("cannot connect to {host_port}")),
        None => bail!("{host_port} resolves to no address"),
    }
}

fn console_is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_and_token_are_where_huggingface_hub_looks() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("token"), "hf_file\n").unwrap();
        let home_text = home.path().to_string_lossy().into_owned();
        let settings = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            HubSettings::from(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let plain = settings(&[("HOME", "/u")]);
        assert_eq!(plain.cache, Path::new("/u/.cache/huggingface/hub"));
        assert_eq!(plain.endpoint, "https://huggingface.co");
        assert_eq!(settings(&[("HOME", "/u"), ("XDG_CACHE_HOME", "/x")]).cache, Path::new("/x/huggingface/hub"));
        let in_home = settings(&[("HF_HOME", &home_text)]);
        assert_eq!(in_home.cache, home.path().join("hub"));
        assert_eq!(in_home.token.as_deref(), Some("hf_file"));
        let both = settings(&[("HF_HOME", &home_text), ("HF_HUB_CACHE", "/c"), ("HF_TOKEN", "hf_env")]);
        assert_eq!((both.cache.as_path(), both.token.as_deref()), (Path::new("/c"), Some("hf_env")));
        assert_eq!(settings(&[("HUGGINGFACE_HUB_CACHE", "/old")]).cache, Path::new("/old"));
        assert_eq!(settings(&[("HF_HOME", "/none"), ("HF_TOKEN_PATH", "/no/file")]).token, None);
        let tilde =
            settings(&[("HOME", "/u"), ("HF_HOME", "~/hf"), ("HF_TOKEN", " hf_x\n"), ("HF_ENDPOINT", "http://h/")]);
        assert_eq!(
            (tilde.cache, tilde.token.as_deref(), tilde.endpoint.as_str()),
            (PathBuf::from("/u/hf/hub"), Some("hf_x"), "http://h")
        );
        assert_eq!(settings(&[("HF_TOKEN", "hf_x"), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]).token, None);
    }

    #[test]
    fn offline_as_huggingface_hub_reads_it() {
        let some = |v: &str| Some(v.to_string());
        assert!(is_offline(some("1"), None));
        assert!(is_offline(some("yes"), None));
        assert!(is_offline(some("On"), None));
        assert!(!is_offline(some("0"), some("1")), "HF_HUB_OFFLINE decides when set");
        assert!(is_offline(None, some("TRUE")));
        assert!(!is_offline(None, None));
        assert!(!is_offline(some("offline"), None));
    }

    #[test]
    fn the_first_hop_is_the_proxy_when_one_is_set() {
        let hub = "https://huggingface.co";
        assert_eq!(first_hop(hub, None).0, "huggingface.co:443");
        assert_eq!(first_hop("http://127.0.0.1:8000/x", None).0, "127.0.0.1:8000");
        let proxy = |url: &str| Some(("HTTPS_PROXY", url.to_string()));
        assert_eq!(first_hop(hub, proxy("http://user:pw@proxy.corp:3128/")).0, "proxy.corp:3128");
        assert_eq!(first_hop(hub, proxy("proxy.corp")).0, "proxy.corp:80");
        let (address, named) = first_hop(hub, proxy("socks5://proxy.corp"));
        assert_eq!(address, "proxy.corp:1080");
        assert_eq!(named, "the proxy proxy.corp (HTTPS_PROXY, socks5)");
    }

    #[test]
    fn unreachable_endpoint_fails_fast() {
        let started = std::time::Instant::now();
        // Port 9 (discard) on loopback: nothing listens, the connect is refused at once.
        assert!(check_reachable("http://127.0.0.1:9").is_err());
        assert!(started.elapsed() < Duration::from_secs(6));
    }
}
