//! Compiling components, with an on-disk cache of compiled artifacts.
//!
//! A cache file is named by the sha256 of the component and the engine's precompile
//! compatibility hash (wasmtime version, target, settings), so a changed plugin or an upgraded
//! gateway never picks up a stale artifact: it simply misses and compiles again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::LoadError;
use crate::plugin::CompiledFrom;

/// The cache file for a component with this sha256 under this engine.
pub(crate) fn cache_path(engine: &Engine, cache_dir: &Path, wasm_sha256: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache_dir.join(format!("{wasm_sha256}-{:016x}.cwasm", hasher.finish()))
}

/// Compiles `wasm` (or loads it from `cache_dir`). Errors name the plugin.
pub(crate) fn compile(
    engine: &Engine,
    plugin: &str,
    path: &Path,
    wasm: &[u8],
    wasm_sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<(Component, CompiledFrom), LoadError> {
    let not_a_component = |e: wasmtime::Error| LoadError::NotAComponent {
        plugin: plugin.to_string(),
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let Some(cache_dir) = cache_dir else {
        let component = Component::from_binary(engine, wasm).map_err(not_a_component)?;
        return Ok((component, CompiledFrom::Compiled));
    };

    let cached = cache_path(engine, cache_dir, wasm_sha256);
    if cached.is_file() {
        match deserialize_cached(engine, &cached) {
            Ok(component) => return Ok((component, CompiledFrom::Cache)),
            // A damaged or foreign file is not fatal: compile again and overwrite it.
            Err(e) => {
                tracing::warn!(plugin, file = %cached.display(), error = %format!("{e:#}"), "ignoring unusable cached plugin artifact")
            }
        }
    }

    let artifact = engine.precompile_component(wasm).map_err(not_a_component)?;
    if let Err(e) = write_atomically(cache_dir, &cached, &artifact) {
        // The cache is an optimisation: a read-only or full disk must not stop the gateway.
        tracing::warn!(plugin, dir = %cache_dir.display(), error = %e, "cannot write plugin cache");
    }
    let component = deserialize_fresh(engine, &artifact).map_err(not_a_component)?;
    Ok((component, CompiledFrom::Compiled))
}

/// Loads a cached artifact.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file was produced by `precompile_component` of a
    // compatible engine and not tampered with. The gateway alone writes the cache directory
    // (create it owned by the gateway's user, mode 0700; docs/PLUGINS.md says so), names
    // files by the wasm's sha256 and the engine's compatibility hash, and writes them by
    // atomic rename; wasmtime also checks the header's version and settings on load.
    unsafe { Component::deserialize_file(engine, file) }
}

/// Loads an artifact this process has just compiled.
#[allow(unsafe_code)]
fn deserialize_fresh(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` comes straight from `Engine::precompile_component` of this engine.
    unsafe { Component::deserialize(engine, artifact) }
}

fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}
