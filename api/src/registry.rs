//! Registries of named extensions: one per extension trait, keyed by the name users type on the
//! command line (`-tr nnUNetTrainer_50epochs`, `-pl nnUNetPlannerResEncM`, …).
//!
//! Built-in extensions are submitted at link time with [`crate::register!`]; dynamic plugins add
//! theirs through [`crate::plugin::PluginRegistrar`]. A name registered twice is an error that
//! names both origins, and an unknown name is an error listing the nearest known names.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::augmentation::Augmentation;
use crate::error::{Error, PluginError, Result};
use crate::io::Reader;
use crate::loss::Loss;
use crate::network::Architecture;
use crate::planning::Planner;
use crate::training::Trainer;

/// Where an extension comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into this binary.
    BuiltIn,
    /// Loaded from the dynamic library at this path.
    Plugin(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Plugin(path) => write!(f, "plugin {}", path.display()),
        }
    }
}

/// A constructor for one extension.
pub type Factory<T> = Arc<dyn Fn() -> Box<T> + Send + Sync>;

/// One registered extension: its name, a one-line description, its origin and how to make it.
pub struct Entry<T: ?Sized> {
    /// The name users select it by.
    pub name: String,
    /// One-line description, shown in listings.
    pub description: String,
    /// Where it was registered from.
    pub origin: Origin,
    factory: Factory<T>,
}

impl<T: ?Sized> Entry<T> {
    /// A fresh instance of the extension.
    pub fn create(&self) -> Box<T> {
        (self.factory)()
    }
}

/// A link-time registration of a built-in extension, collected with `inventory`.
/// Use [`crate::register!`] rather than building one by hand.
pub struct BuiltIn<T: ?Sized + 'static> {
    /// The name users select it by.
    pub name: &'static str,
    /// One-line description, shown in listings.
    pub description: &'static str,
    /// Makes a fresh instance.
    pub make: fn() -> Box<T>,
}

inventory::collect!(BuiltIn<dyn Reader>);
inventory::collect!(BuiltIn<dyn Planner>);
inventory::collect!(BuiltIn<dyn Trainer>);
inventory::collect!(BuiltIn<dyn Loss>);
inventory::collect!(BuiltIn<dyn Augmentation>);
inventory::collect!(BuiltIn<dyn Architecture>);

/// All extensions of one kind, ordered by name.
pub struct Registry<T: ?Sized> {
    kind: &'static str,
    entries: BTreeMap<String, Entry<T>>,
}

impl<T: ?Sized> Registry<T> {
    /// An empty registry for extensions of `kind` (e.g. "trainer"), the word used in messages.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            entries: BTreeMap::new(),
        }
    }

    /// The kind of extension this registry holds, as used in messages.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Adds an extension; a name that is already taken is an error naming both origins.
    pub fn add(
        &mut self,
        name: &str,
        description: &str,
        origin: Origin,
        factory: Factory<T>,
    ) -> Result<()> {
        if name.trim().is_empty() {
            return Err(Error::Invalid(format!(
                "a {} from {origin} has an empty name",
                self.kind
            )));
        }
        if let Some(existing) = self.entries.get(name) {
            return Err(PluginError::DuplicateName {
                kind: self.kind,
                name: name.to_string(),
                first: existing.origin.to_string(),
                second: origin.to_string(),
            }
            .into());
        }
        self.entries.insert(
            name.to_string(),
            Entry {
                name: name.to_string(),
                description: description.to_string(),
                origin,
                factory,
            },
        );
        Ok(())
    }

    /// The entry called `name`, or an error listing the nearest names.
    pub fn get(&self, name: &str) -> Result<&Entry<T>> {
        self.entries.get(name).ok_or_else(|| {
            PluginError::UnknownName {
                kind: self.kind,
                name: name.to_string(),
                suggestions: nearest_names(name, self.entries.keys().map(String::as_str)),
            }
            .into()
        })
    }

    /// A new instance of the extension called `name`.
    pub fn create(&self, name: &str) -> Result<Box<T>> {
        Ok(self.get(name)?.create())
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// All entries, ordered by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.entries.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every built-in of this kind linked into the binary.
    fn add_builtins(&mut self) -> Result<()>
    where
        T: 'static,
        BuiltIn<T>: inventory::Collect,
    {
        for item in inventory::iter::<BuiltIn<T>> {
            self.add(
                item.name,
                item.description,
                Origin::BuiltIn,
                Arc::new(item.make),
            )?;
        }
        Ok(())
    }
}

/// Up to five known names closest to `name`: case-insensitive matches and substrings first, then
/// by edit similarity.
pub fn nearest_names<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(f64, &str)> = known
        .map(|candidate| {
            let cand_lower = candidate.to_lowercase();
            let mut score = strsim::jaro_winkler(&lower, &cand_lower);
            if cand_lower == lower {
                score += 2.0;
            } else if !lower.is_empty()
                && (cand_lower.contains(&lower) || lower.contains(&cand_lower))
            {
                score += 0.5;
            }
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(5)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The six registries, one per extension trait.
pub struct Registries {
    /// Image file formats ([`Reader`]).
    pub readers: Registry<dyn Reader>,
    /// Experiment planners ([`Planner`], `-pl`).
    pub planners: Registry<dyn Planner>,
    /// Training recipes ([`Trainer`], `-tr`).
    pub trainers: Registry<dyn Trainer>,
    /// Loss functions ([`Loss`]).
    pub losses: Registry<dyn Loss>,
    /// Data augmentation transforms ([`Augmentation`]).
    pub augmentations: Registry<dyn Augmentation>,
    /// Network architectures ([`Architecture`]), by the plans' `network_class_name`.
    pub architectures: Registry<dyn Architecture>,
}

impl Registries {
    /// Registries with nothing in them.
    pub fn empty() -> Self {
        Self {
            readers: Registry::new("reader"),
            planners: Registry::new("planner"),
            trainers: Registry::new("trainer"),
            losses: Registry::new("loss"),
            augmentations: Registry::new("augmentation"),
            architectures: Registry::new("architecture"),
        }
    }

    /// Registries holding every built-in extension linked into this binary. Only the crates the
    /// binary links contribute, so a program must link (`use`) `nnunet-plugins`,
    /// `nnunet-training` and `nnunet-planners` to see theirs.
    pub fn builtin() -> Result<Self> {
        let mut r = Self::empty();
        r.readers.add_builtins()?;
        r.planners.add_builtins()?;
        r.trainers.add_builtins()?;
        r.losses.add_builtins()?;
        r.augmentations.add_builtins()?;
        r.architectures.add_builtins()?;
        Ok(r)
    }
}

/// Registers a built-in extension at link time.
///
/// ```ignore
/// nnunet_api::register!(Trainer, "nnUNetTrainer_50epochs", "50 epochs", || Box::new(Epochs(50)));
/// ```
/// The first argument is the trait: `Reader`, `Planner`, `Trainer`, `Loss`, `Augmentation` or
/// `Architecture`.
#[macro_export]
macro_rules! register {
    ($kind:ident, $name:expr, $description:expr, $make:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::BuiltIn::<dyn $crate::$kind> {
                name: $name,
                description: $description,
                make: $make,
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Named: Send + Sync {
        fn name(&self) -> &str;
    }
    struct A;
    impl Named for A {
        fn name(&self) -> &str {
            "A"
        }
    }

    fn factory() -> Factory<dyn Named> {
        Arc::new(|| Box::new(A))
    }

    #[test]
    fn duplicate_names_both_origins() {
        let mut r: Registry<dyn Named> = Registry::new("thing");
        r.add("x", "first", Origin::BuiltIn, factory()).unwrap();
        let err = r
            .add(
                "x",
                "second",
                Origin::Plugin("/tmp/libp.so".into()),
                factory(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("built-in"), "{err}");
        assert!(err.contains("/tmp/libp.so"), "{err}");
        assert!(err.contains("'x'"), "{err}");
    }

    #[test]
    fn unknown_name_suggests_nearest() {
        let mut r: Registry<dyn Named> = Registry::new("trainer");
        for n in [
            "nnUNetTrainer",
            "nnUNetTrainer_50epochs",
            "nnUNetTrainer_5epochs",
            "nnUNetTrainerAdam",
        ] {
            r.add(n, "", Origin::BuiltIn, factory()).unwrap();
        }
        let err = r.get("nnUNetTrainer_50epoch").err().unwrap().to_string();
        assert!(
            err.starts_with("unknown trainer 'nnUNetTrainer_50epoch'"),
            "{err}"
        );
        assert!(err.contains("did you mean nnUNetTrainer_50epochs"), "{err}");
        let err = r.get("nnunettrainer").err().unwrap().to_string();
        assert!(err.contains("did you mean nnUNetTrainer,"), "{err}");
        let err = r.get("zzzz").err().unwrap().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert_eq!(r.create("nnUNetTrainerAdam").unwrap().name(), "A");
    }
}
