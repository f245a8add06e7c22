//! A seeded promotion world: staging, prod and mirror registries whose contents make a plan hit
//! every action. Shared by the integration tests and the demo.

use std::path::Path;

use ferry_model::{Digest, Host};

use crate::registry::RegistryServer;
use crate::seed::{ImageSpec, Pushed, Seeder};

#[derive(Debug)]
pub struct World {
    pub staging: RegistryServer,
    pub prod: RegistryServer,
    pub mirror: RegistryServer,
    /// `demo/app:1.0` in staging: a two-platform OCI index.
    pub index: Pushed,
    /// `demo/app:1.1` in staging.
    pub app_11: Pushed,
    /// What prod's `demo/app:1.1` already holds: other content, a conflict that must stay.
    pub prod_11: Pushed,
    /// `demo/single:2.0`, in staging and already in prod.
    pub single: Pushed,
    /// `demo/tools:3.0` in staging; prod holds the manifest but not the tag.
    pub tools: Pushed,
    /// A digest no registry holds.
    pub ghost: Digest,
}

impl World {
    pub async fn new() -> Self {
        let (staging, prod, mirror) =
            (RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await);
        let stage = Seeder::new(&staging);
        let index = stage
            .index(
                "demo/app",
                Some("1.0"),
                &[ImageSpec::small("amd64", 1, 2), ImageSpec::small("arm64", 2, 2)],
            )
            .await;
        let app_11 = stage.image("demo/app", Some("1.1"), &ImageSpec::small("amd64", 3, 1)).await;
        let single = stage.image("demo/single", Some("2.0"), &ImageSpec::small("amd64", 4, 1)).await;
        let tools = stage.image("demo/tools", Some("3.0"), &ImageSpec::small("amd64", 5, 1)).await;
        let production = Seeder::new(&prod);
        let prod_11 = production.image("demo/app", Some("1.1"), &ImageSpec::small("amd64", 99, 1)).await;
        production.image("demo/single", Some("2.0"), &ImageSpec::small("amd64", 4, 1)).await;
        production.image("demo/tools", None, &ImageSpec::small("amd64", 5, 1)).await;
        World {
            staging,
            prod,
            mirror,
            index,
            app_11,
            prod_11,
            single,
            tools,
            ghost: Digest::of(b"never pushed"),
        }
    }

    pub fn hosts(&self) -> Vec<Host> {
        vec![self.staging.host(), self.prod.host(), self.mirror.host()]
    }

    /// `--insecure-registry HOST` for each registry.
    pub fn insecure_flags(&self) -> Vec<String> {
        self.hosts().iter().flat_map(|h| ["--insecure-registry".to_owned(), h.to_string()]).collect()
    }

    /// A thin-manifest directory promoting the seeded images from staging to prod and mirror,
    /// with `extra_images` appended to its `images.yaml`.
    pub fn write_thin_dir(&self, dir: &Path, extra_images: &str) -> std::io::Result<()> {
        let images = format!(
            "- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n    \"{}\": [\"1.1\"]\n\
             # the same name again, as real kops files do; two digests aimed at :latest\n\
             - name: demo/app\n  dmap:\n    \"{}\": [\"latest\"]\n\
             - name: demo/app\n  dmap:\n    {}:\n    - latest\n\
             - name: demo/single\n  dmap:\n    \"{}\": [\"2.0\"]\n\
             - name: demo/tools\n  dmap:\n    \"{}\": [\"3.0\"]\n\
             - name: demo/ghost\n  dmap:\n    \"{}\": [\"0.1\"]\n{extra_images}",
            self.index.digest,
            self.app_11.digest,
            self.index.digest,
            self.app_11.digest,
            self.single.digest,
            self.tools.digest,
            self.ghost
        );
        crate::write_thin_manifest(
            dir,
            "demo",
            &self.staging.host(),
            &[self.prod.host(), self.mirror.host()],
            &images,
        )
    }
}
