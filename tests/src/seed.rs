//! Pushes test images over the plain registry API (monolithic blob uploads and manifest PUTs),
//! independently of Ferry's own registry code.

use ferry_model::Digest;
use serde_json::json;

use crate::registry::RegistryServer;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer of `size` pseudo-random bytes. The same seed and size give the same bytes, so two
/// images built with one `LayerSpec` share that blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub size: usize,
    pub seed: u64,
}

/// One single-platform image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub os: &'static str,
    pub architecture: &'static str,
    pub layers: Vec<LayerSpec>,
}

impl ImageSpec {
    /// A small image with `n_layers` layers of a few KiB, distinct per `seed`.
    pub fn small(architecture: &'static str, seed: u64, n_layers: usize) -> Self {
        let layers =
            (0..n_layers).map(|i| LayerSpec { size: 2048 + i * 512, seed: seed * 1000 + i as u64 }).collect();
        Self { os: "linux", architecture, layers }
    }
}

/// What was pushed: the manifest's digest and bytes, the blobs it references, and for an index
/// its children.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub blobs: Vec<Digest>,
    pub children: Vec<Pushed>,
}

#[derive(Clone, Debug)]
pub struct Seeder {
    http: reqwest::Client,
    base: String,
    basic_auth: Option<(String, String)>,
    bearer: Option<String>,
}

/// Deterministic bytes: splitmix64 of the seed.
pub fn pseudo_random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

impl Seeder {
    pub fn new(server: &RegistryServer) -> Self {
        Self::for_url(&server.base_url())
    }

    pub fn for_url(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), basic_auth: None, bearer: None }
    }

    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        self.basic_auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Sends this bearer token with every request (for a registry in token-auth mode).
    pub fn with_bearer(mut self, token: String) -> Self {
        self.bearer = Some(token);
        self
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match (&self.basic_auth, &self.bearer) {
            (Some((user, password)), _) => request.basic_auth(user, Some(password)),
            (None, Some(token)) => request.bearer_auth(token),
            (None, None) => request,
        }
    }

    /// Uploads a blob (POST then a monolithic PUT) and returns its digest.
    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let head = self
            .request(reqwest::Method::HEAD, &format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await;
        if head.is_ok_and(|r| r.status().is_success()) {
            return digest;
        }
        self.upload(repo, bytes).await
    }

    /// Uploads a blob without asking first whether it is there (POST, then a monolithic PUT):
    /// two requests, what a writer with nothing to check would send.
    pub async fn upload(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let start = self
            .request(reqwest::Method::POST, &format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .expect("start upload");
        assert_eq!(start.status(), 202, "start upload: {}", start.text().await.unwrap_or_default());
        let location = start.headers()["location"].to_str().expect("location").to_owned();
        let url = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let separator = if url.contains('?') { '&' } else { '?' };
        let done = self
            .request(reqwest::Method::PUT, &format!("{url}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(done.status(), 201, "finish upload: {}", done.text().await.unwrap_or_default());
        digest
    }

    /// PUTs manifest bytes under `reference` (a tag or a digest) and returns their digest.
    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let response = self
            .request(reqwest::Method::PUT, &format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("put manifest");
        let status = response.status();
        assert_eq!(
            status,
            201,
            "put manifest {repo}:{reference}: {}",
            response.text().await.unwrap_or_default()
        );
        Digest::of(bytes)
    }

    /// Pushes an OCI 1.1 artifact manifest whose `subject` is `subject` (by digest only: no
    /// referrers tag index is written, as a client of a registry with the referrers API would
    /// push it). Its one layer holds `content`, of media type `artifact_type`, which is also the
    /// manifest's `artifactType`; the config is the empty descriptor.
    pub async fn referrer(
        &self,
        repo: &str,
        subject: &Pushed,
        artifact_type: &str,
        content: &[u8],
        annotations: &[(&str, &str)],
    ) -> Pushed {
        let pushed = self.referrer_unpushed(repo, subject, artifact_type, content, annotations).await;
        self.manifest(repo, &pushed.digest.to_string(), OCI_MANIFEST, &pushed.bytes).await;
        pushed
    }

    /// [`Seeder::referrer`]'s manifest with its blobs pushed, but not the manifest itself: for
    /// tests that hand it to the code under test to push.
    pub async fn referrer_unpushed(
        &self,
        repo: &str,
        subject: &Pushed,
        artifact_type: &str,
        content: &[u8],
        annotations: &[(&str, &str)],
    ) -> Pushed {
        let empty = self.blob(repo, b"{}").await;
        let layer = self.blob(repo, content).await;
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer.to_string(), "size": content.len()}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.bytes.len()},
        });
        if !annotations.is_empty() {
            manifest["annotations"] =
                json!(annotations.iter().copied().collect::<std::collections::BTreeMap<_, _>>());
        }
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let digest = Digest::of(&bytes);
        Pushed { digest, media_type: OCI_MANIFEST, bytes, blobs: vec![empty, layer], children: Vec::new() }
    }

    /// Lists `referrer` (a manifest pushed with [`Seeder::referrer`]) in the `sha256-<hex>`
    /// referrers tag index of `subject`, as cosign maintains it on a registry without the
    /// referrers API: the index read, the entry appended, the index written. Written here by
    /// hand, not by Ferry's registry layer.
    pub async fn list_referrer(&self, repo: &str, subject: &Digest, referrer: &Pushed) {
        let tag = subject.tag_form();
        let mut index = match self.get_manifest(repo, &tag).await {
            Some(bytes) => serde_json::from_slice(&bytes).expect("a referrers index"),
            None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        };
        let manifest: serde_json::Value = serde_json::from_slice(&referrer.bytes).expect("a manifest");
        let mut entry = json!({"mediaType": referrer.media_type, "digest": referrer.digest.to_string(), "size": referrer.bytes.len()});
        if let Some(t) = manifest["artifactType"].as_str() {
            entry["artifactType"] = json!(t);
        }
        index["manifests"].as_array_mut().expect("manifests").push(entry);
        self.manifest(repo, &tag, OCI_INDEX, &serde_json::to_vec(&index).expect("json")).await;
    }

    /// Pushes a single-platform OCI image and tags it if `tag` is given.
    pub async fn image(&self, repo: &str, tag: Option<&str>, spec: &ImageSpec) -> Pushed {
        let mut layer_descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        let mut blobs = Vec::new();
        for layer in &spec.layers {
            let bytes = pseudo_random_bytes(layer.size, layer.seed);
            let digest = self.blob(repo, &bytes).await;
            layer_descriptors
                .push(json!({"mediaType": OCI_LAYER, "digest": digest.to_string(), "size": bytes.len()}));
            diff_ids.push(digest.to_string());
            blobs.push(digest);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": spec.architecture,
            "os": spec.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config json");
        let config_digest = self.blob(repo, &config).await;
        blobs.insert(0, config_digest);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layer_descriptors,
        }))
        .expect("manifest json");
        let digest = Digest::of(&manifest);
        let reference = tag.map(str::to_owned).unwrap_or_else(|| digest.to_string());
        self.manifest(repo, &reference, OCI_MANIFEST, &manifest).await;
        Pushed { digest, media_type: OCI_MANIFEST, bytes: manifest, blobs, children: Vec::new() }
    }

    /// Pushes one image per spec (untagged) and an OCI index over them, tagged if `tag` is given.
    pub async fn index(&self, repo: &str, tag: Option<&str>, specs: &[ImageSpec]) -> Pushed {
        let mut children = Vec::new();
        let mut entries = Vec::new();
        for spec in specs {
            let child = self.image(repo, None, spec).await;
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": child.digest.to_string(),
                "size": child.bytes.len(),
                "platform": {"architecture": spec.architecture, "os": spec.os},
            }));
            children.push(child);
        }
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
                .expect("index json");
        let digest = Digest::of(&index);
        let reference = tag.map(str::to_owned).unwrap_or_else(|| digest.to_string());
        self.manifest(repo, &reference, OCI_INDEX, &index).await;
        Pushed { digest, media_type: OCI_INDEX, bytes: index, blobs: Vec::new(), children }
    }

    /// Pushes an index nested `depth` levels deep (depth 1 is an ordinary index of one image),
    /// tagging the outermost with `tag`, and returns the outermost index's digest. Staging
    /// registries accept any depth.
    pub async fn nested_index(&self, repo: &str, tag: Option<&str>, depth: usize, seed: u64) -> Digest {
        let inner = self.index(repo, None, &[ImageSpec::small("amd64", seed, 1)]).await;
        let (mut digest, mut size) = (inner.digest, inner.bytes.len());
        for level in 2..=depth {
            let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_INDEX, "digest": digest.to_string(), "size": size}]}))
            .expect("index json");
            let reference = match tag {
                Some(tag) if level == depth => tag.to_owned(),
                _ => Digest::of(&index).to_string(),
            };
            digest = self.manifest(repo, &reference, OCI_INDEX, &index).await;
            size = index.len();
        }
        if depth == 1
            && let Some(tag) = tag
        {
            self.tag(repo, &inner, tag).await;
        }
        digest
    }

    /// Pushes an index whose `manifests` list `n` entries cycling over `children` (digest and
    /// size), which need not exist: what a hostile push can look like.
    pub async fn wide_index(&self, repo: &str, tag: &str, n: usize, children: &[(Digest, usize)]) -> Digest {
        let entries: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let (digest, size) = &children[i % children.len()];
                json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": size})
            })
            .collect();
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
                .expect("index json");
        self.manifest(repo, tag, OCI_INDEX, &index).await
    }

    /// Points `tag` at an already pushed manifest.
    pub async fn tag(&self, repo: &str, pushed: &Pushed, tag: &str) {
        self.manifest(repo, tag, pushed.media_type, &pushed.bytes).await;
    }

    /// A manifest request. Distribution's filesystem storage answers 500 for a moment while
    /// another client rewrites the tag (its link file is briefly empty); such answers are asked
    /// again, a few times.
    async fn manifest_request(
        &self,
        method: reqwest::Method,
        repo: &str,
        reference: &str,
    ) -> reqwest::Response {
        let mut attempt = 0;
        loop {
            let response = self
                .request(method.clone(), &format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .header("accept", format!("{OCI_INDEX}, {OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"))
                .send()
                .await
                .expect("manifest request");
            attempt += 1;
            if !response.status().is_server_error() || attempt == 5 {
                return response;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Pushes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) into `repo` as
    /// it is: every blob, every manifest by digest (children before the indexes that list
    /// them), then each `org.opencontainers.image.ref.name` of `index.json` as a tag, in order.
    /// Returns the tags and their digests.
    pub async fn oci_layout(&self, repo: &str, dir: &std::path::Path) -> Vec<(String, Digest)> {
        const MANIFEST_TYPES: [&str; 4] = [
            OCI_MANIFEST,
            OCI_INDEX,
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ];
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
                .expect("JSON");
        let mut manifests: Vec<(Digest, String, Vec<u8>, Vec<Digest>)> = Vec::new();
        for entry in std::fs::read_dir(dir.join("blobs/sha256")).expect("blobs") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("blob");
            let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .filter(|t| MANIFEST_TYPES.contains(&t.as_str()));
            match media_type {
                Some(media_type) => {
                    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                    let children = value["manifests"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d["digest"].as_str().and_then(|d| Digest::parse(d).ok()))
                        .collect();
                    manifests.push((Digest::of(&bytes), media_type, bytes, children));
                }
                None => {
                    self.blob(repo, &bytes).await;
                }
            }
        }
        let mut pushed: std::collections::HashSet<Digest> = std::collections::HashSet::new();
        while !manifests.is_empty() {
            let before = manifests.len();
            let mut waiting = Vec::new();
            for (digest, media_type, bytes, children) in manifests {
                if children.iter().all(|c| pushed.contains(c) || *c == digest) {
                    self.manifest(repo, &digest.to_string(), &media_type, &bytes).await;
                    pushed.insert(digest);
                } else {
                    waiting.push((digest, media_type, bytes, children));
                }
            }
            assert!(
                waiting.len() < before,
                "manifests whose children are not in the layout: {}",
                waiting.len()
            );
            manifests = waiting;
        }
        let mut tags = Vec::new();
        for entry in index["manifests"].as_array().expect("manifests") {
            let Some(tag) = entry["annotations"]["org.opencontainers.image.ref.name"].as_str() else {
                continue;
            };
            let digest = Digest::parse(entry["digest"].as_str().expect("digest")).expect("a digest");
            let media_type = entry["mediaType"].as_str().expect("mediaType");
            let bytes = std::fs::read(dir.join("blobs/sha256").join(digest.hex())).expect("tagged manifest");
            self.manifest(repo, tag, media_type, &bytes).await;
            tags.push((tag.to_owned(), digest));
        }
        tags
    }

    /// The digest `repo:tag` points at, read with a HEAD, or `None`.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Option<Digest> {
        let response = self.manifest_request(reqwest::Method::HEAD, repo, tag).await;
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "HEAD {repo}:{tag}: {}", response.status());
        let digest = response.headers()["docker-content-digest"].to_str().expect("digest header");
        Some(Digest::parse(digest).expect("valid digest"))
    }

    /// The raw bytes of `repo:reference` (a tag or digest), or `None`.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let response = self.manifest_request(reqwest::Method::GET, repo, reference).await;
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "GET {repo}:{reference}: {}", response.status());
        Some(response.bytes().await.expect("manifest body").to_vec())
    }

    /// The bytes of a blob.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let response = self
            .request(reqwest::Method::GET, &format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .expect("get blob");
        assert!(response.status().is_success(), "GET blob {repo}@{digest}: {}", response.status());
        response.bytes().await.expect("blob body").to_vec()
    }

    /// Whether a blob exists in `repo`.
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> bool {
        self.request(reqwest::Method::HEAD, &format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Deletes the manifest `digest` from `repo` (and with it every tag pointing at it).
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) {
        let response = self
            .request(reqwest::Method::DELETE, &format!("{}/v2/{repo}/manifests/{digest}", self.base))
            .send()
            .await
            .expect("delete manifest");
        assert!(response.status().is_success(), "DELETE {repo}@{digest}: {}", response.status());
    }
}
