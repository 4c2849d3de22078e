//! Hub ids: downloads go through hf-hub into the HF cache (here from a tiny HTTP server on
//! 127.0.0.1 that speaks the parts of the hub protocol hf-hub uses), later runs are offline.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves `<root>/<file>` for `GET /<org>/<name>/resolve/<revision>/<file>` with the headers hf-hub
/// reads (etag, x-repo-commit, content-range); 404 for anything else. Returns the base URL.
fn serve_model_folder(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range_start = None::<u64>;
            let mut range_end = None::<u64>;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = value.trim().split_once('-').unwrap();
                    range_start = a.parse().ok();
                    range_end = b.parse().ok();
                }
            }
            // `/<org>/<name>/resolve/<revision>/<file>`: every revision is the served folder.
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = path.splitn(6, '/').nth(5).unwrap_or("").to_string();
            // A pinned revision (a commit hash) answers as that commit, as the hub does.
            let revision = path.split('/').nth(4).unwrap_or("");
            let commit = if revision.len() == 40 { revision } else { COMMIT };
            let local = root.join(&file);
            let response = match (path.contains("/resolve/"), std::fs::read(&local)) {
                (true, Ok(bytes)) => {
                    let size = bytes.len() as u64;
                    let start = range_start.unwrap_or(0).min(size);
                    let end = range_end.unwrap_or(size.saturating_sub(1)).min(size.saturating_sub(1));
                    let body = if size == 0 { Vec::new() } else { bytes[start as usize..=end as usize].to_vec() };
                    let mut head = format!(
                        "HTTP/1.1 206 Partial Content\r\netag: \"{:x}-{}\"\r\nx-repo-commit: {commit}\r\ncontent-range: bytes {start}-{end}/{size}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        size, file.replace('/', "_"), body.len()
                    )
                    .into_bytes();
                    head.extend(body);
                    head
                }
                _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    url
}

#[test]
fn hub_id_downloads_into_hf_cache_then_works_offline() {
    let test = "hub_id_downloads_into_hf_cache_then_works_offline";
    let Some(models) = tiny_models(test) else {
        return;
    };
    let endpoint = serve_model_folder(models.join("tiny-bert"));
    let hf_home = tempfile::tempdir().unwrap();
    let encode = |offline: bool| {
        let mut cmd = bin();
        cmd.args(["encode", "-m", "test-org/tiny-bert", "--device", "cpu", "-q", "hello"])
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HOME", hf_home.path());
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1").env("HF_ENDPOINT", "http://127.0.0.1:9");
        }
        cmd.output().unwrap()
    };
    let online = encode(false);
    assert_ok(&online);
    let snapshot = hf_home.path().join("hub/models--test-org--tiny-bert/snapshots").join(COMMIT);
    assert!(snapshot.join("model.safetensors").exists(), "not in the HF cache layout");
    let offline = encode(true);
    assert_ok(&offline);
    assert_eq!(stdout(&online), stdout(&offline));
    let local = run(&["encode", "-m", models.join("tiny-bert").to_str().unwrap(), "--device", "cpu", "-q", "hello"]);
    assert_eq!(stdout(&online), stdout(&local), "downloaded model differs from the served folder");
}

#[test]
fn hub_id_without_network_fails_fast_with_advice() {
    let hf_home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = bin()
        .args(["encode", "-m", "distilbert-base-uncased", "hi"])
        .env("HF_HOME", hf_home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_clean_error(&out, "place the model files");

    let offline = bin()
        .args(["encode", "-m", "distilbert-base-uncased", "hi"])
        .env("HF_HOME", hf_home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_clean_error(&offline, "HF_HUB_OFFLINE");

    // The hub client goes through a proxy when one is set: that is the host to reach first.
    let proxied = bin()
        .args(["encode", "-m", "distilbert-base-uncased", "hi"])
        .env("HF_HOME", hf_home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://user:secret@127.0.0.1:9")
        .output()
        .unwrap();
    assert_clean_error(&proxied, "cannot connect to the proxy 127.0.0.1:9 (HTTPS_PROXY, http)");
    assert!(!String::from_utf8_lossy(&proxied.stderr).contains("secret"), "the proxy's password is printed");
    // As the hub client (ureq): a set but empty variable is taken, an https:// one skipped.
    let proxied = |variable: &str, value: &str| {
        bin()
            .args(["encode", "-m", "distilbert-base-uncased", "hi"])
            .env("HF_HOME", hf_home.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env(variable, value)
            .output()
            .unwrap()
    };
    assert_clean_error(&proxied("http_proxy", ""), "the proxy variable http_proxy is set but empty");
    assert_clean_error(&proxied("HTTPS_PROXY", "https://127.0.0.1:8"), "cannot connect to 127.0.0.1:9");
}

/// A cache that transformers filled (config, vocabulary and weights, no `modules.json`) is
/// not taken for the whole model: the sentence-transformers files are fetched at the cached
/// commit, so the embeddings are the model's (here cls pooling and normalised, not mean
/// pooling) and the cache's `refs/main` stays. A file the hub does not have is recorded as
/// absent (as huggingface_hub's `.no_exist/` does), so later runs need no network.
#[test]
fn a_cache_without_the_sentence_transformers_files_fetches_them() {
    let test = "a_cache_without_the_sentence_transformers_files_fetches_them";
    let Some(models) = tiny_models(test) else { return };
    let served = tempfile::tempdir().unwrap();
    copy_dir(&models.join("tiny-bert"), served.path());
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
    std::fs::write(served.path().join("modules.json"), modules).unwrap();
    std::fs::create_dir(served.path().join("1_Pooling")).unwrap();
    std::fs::write(served.path().join("1_Pooling/config.json"), r#"{"pooling_mode_cls_token": true}"#).unwrap();
    let hf_home = tempfile::tempdir().unwrap();
    // Cached at an older commit than the hub's main.
    let older = "a".repeat(40);
    let repo = hf_home.path().join("hub/models--test-org--st");
    let snapshot = repo.join("snapshots").join(&older);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &older).unwrap();
    for file in ["config.json", "vocab.txt", "model.safetensors"] {
        std::fs::copy(served.path().join(file), snapshot.join(file)).unwrap();
    }
    let encode = |model: &str, endpoint: &str| {
        let args = ["encode", "-m", model, "--device", "cpu", "-q", "hello"];
        bin().args(args).env("HF_ENDPOINT", endpoint).env("HF_HOME", hf_home.path()).output().unwrap()
    };
    let endpoint = serve_model_folder(served.path().to_path_buf());
    let from_hub = encode("test-org/st", &endpoint);
    assert_ok(&from_hub);
    let local = encode(served.path().to_str().unwrap(), &endpoint);
    assert_eq!(stdout(&from_hub), stdout(&local), "the cached model without its pooling and normalisation");
    assert!(snapshot.join("1_Pooling/config.json").exists() && !repo.join("snapshots").join(COMMIT).exists());
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), older);

    // A plain model: modules.json is absent on the hub, which a later run knows offline.
    let plain = tempfile::tempdir().unwrap();
    copy_dir(&models.join("tiny-bert"), plain.path());
    let endpoint = serve_model_folder(plain.path().to_path_buf());
    assert_ok(&encode("test-org/plain", &endpoint));
    let absent = hf_home.path().join("hub/models--test-org--plain/.no_exist").join(COMMIT).join("modules.json");
    assert!(absent.is_file(), "no record of modules.json's absence");
    let unreachable = encode("test-org/plain", "http://127.0.0.1:9");
    assert_ok(&unreachable);
    assert_eq!(stderr(&unreachable), "", "a known absence needs no note");
}
