//! The `settings!` macro and the small macros it expands to.

/// The field type of a setting: its own type when it has a default, else an `Option`.
#[doc(hidden)]
#[macro_export]
macro_rules! __setting_type {
    ($ty:ty) => { ::std::option::Option<$ty> };
    ($ty:ty, $default:expr) => { $ty };
}

/// A setting's value: the one given, else its default when it has one.
#[doc(hidden)]
#[macro_export]
macro_rules! __given_or_default {
    ($given:expr) => {
        $given
    };
    ($given:expr, $default:expr) => {
        $given.unwrap_or_else(|| $default)
    };
}

/// How a setting is read: [`AsWritten`](crate::AsWritten) unless its declaration names a reader,
/// [`Listed`](crate::Listed) when it is a list split by a separator.
#[doc(hidden)]
#[macro_export]
macro_rules! __reader {
    (;) => {
        $crate::AsWritten
    };
    ($reader:ty ;) => {
        $reader
    };
    (; $sep:literal) => {
        $crate::Listed<$sep>
    };
}

/// Declares a program's settings, each once, and generates from the declarations:
///
/// - `args`: a `clap::Args` struct with a `--config` flag (its variable named by `config_env`,
///   its help line by `config_help`) and one flag per setting, each also read from its
///   environment variable, with the default in its help;
/// - `file`: what a TOML config file gives, with `parse`, which refuses unknown keys by name;
/// - `settings`: the merged settings (a setting without a default is an `Option`), with a
///   private `merge(args, file, env)` and a public `catalogue()` of every spelling.
///
/// A declaration is `name: Type [= default], file "section.key", shown "default as shown",
/// env "VAR"`, then optionally `formerly "old_key" "old-flag" "OLD_VAR"` (a renamed setting's
/// former spellings, still accepted), `read Reader` (a [`ReadSetting`](crate::ReadSetting)
/// other than [`AsWritten`](crate::AsWritten)), or, for a `Vec<T>` setting, `split 'c'`: the
/// flag may be repeated, and its variable and each flag value hold items separated by `c`.
///
/// ```
/// use tandem_settings::{settings, Span};
///
/// settings! {
///     /// `demo` flags
///     args DemoArgs, file DemoFile, settings DemoSettings,
///     config_env "DEMO_CONFIG", config_help "TOML file with settings, in the table [demo]";
///     /// How often to say hello
///     every: Span = Span::secs(1), file "demo.every", shown "1s", env "DEMO_EVERY";
///     /// Whom to greet
///     name: Vec<String> = Vec::new(), file "demo.names", shown "none", env "DEMO_NAMES", split ',';
/// }
///
/// let file = DemoFile::parse("[demo]\nnames = [\"a\", \"b\"]\n").unwrap();
/// assert_eq!(file.name, Some(vec!["a".to_string(), "b".to_string()]));
/// assert_eq!(DemoSettings::catalogue()[1].flag(), "--name");
/// ```
#[macro_export]
macro_rules! settings {
    (
        $(#[$args_meta:meta])*
        args $args:ident, file $file:ident, settings $settings:ident,
        config_env $config_env:literal, config_help $config_help:literal;
        $(
            $(#[doc = $doc:literal])+
            $name:ident : $ty:ty $(= $default:expr)?,
                file $file_key:literal, shown $shown:literal, env $env:literal
                $(, formerly $old_key:literal $old_flag:literal $old_env:literal)?
                $(, read $reader:ty)?
                $(, split $sep:literal)?;
        )*
    ) => {
        $(#[$args_meta])*
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct $args {
            #[doc = $config_help]
            #[arg(long, env = $config_env)]
            pub config: Option<::std::path::PathBuf>,
            $(
                #[arg(
                    long,
                    env = $env,
                    hide_env_values = true,
                    $(visible_alias = $old_flag,)?
                    $(value_parser = <$reader as $crate::ReadSetting<$ty>>::text,)?
                    $(value_delimiter = $sep,)?
                    help = concat!($($doc,)+ " [default: ", $shown, "]" $(, " [also env: ", $old_env, "]")?)
                )]
                // Plain `Option<..>`: clap's derive tells an optional or repeated flag by
                // the type's spelling.
                pub $name: Option<$ty>,
            )*
        }

        /// What a config file gives.
        #[derive(Default)]
        pub struct $file {
            $( pub $name: ::std::option::Option<$ty>, )*
        }

        impl $file {
            /// Reads a config file's text; a key that no setting takes is an error naming it.
            pub fn parse(text: &str) -> ::std::result::Result<$file, ::std::string::String> {
                let mut keys = $crate::FileKeys::parse(text, &[$($file_key),*])?;
                let file = $file {
                    $(
                        $name: keys
                            .take($file_key, [$($old_key,)? stringify!($name)][0])?
                            .map(|(key, value)| {
                                <$crate::__reader!($($reader)? ; $($sep)?) as $crate::ReadSetting<$ty>>::file(value)
                                    .map_err(|e| format!("{key}: {e}"))
                            })
                            .transpose()?,
                    )*
                };
                keys.refuse_leftovers()?;
                Ok(file)
            }

            /// Reads the config file at `path`, or gives nothing when there is none.
            pub fn read(
                path: Option<&::std::path::Path>,
            ) -> ::std::result::Result<$file, $crate::ConfigError> {
                let Some(path) = path else {
                    return Ok($file::default());
                };
                let text = ::std::fs::read_to_string(path).map_err(|e| {
                    $crate::ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                $file::parse(&text)
                    .map_err(|e| $crate::ConfigError(format!("config file {}: {e}", path.display())))
            }
        }

        /// Settings after flags, environment, file and defaults are merged.
        #[derive(Clone, Debug)]
        pub struct $settings {
            $( $(#[doc = $doc])+ pub $name: $crate::__setting_type!($ty $(, $default)?), )*
        }

        impl $settings {
            /// Merges what flags and environment give (`args`, where the environment variables
            /// of former spellings are read through `env`) with the file and the defaults.
            fn merge(
                args: $args,
                file: $file,
                env: &dyn Fn(&str) -> ::std::option::Option<::std::string::String>,
            ) -> ::std::result::Result<$settings, $crate::ConfigError> {
                Ok($settings {
                    $(
                        $name: $crate::__given_or_default!(
                            $crate::given_or_former_env::<$ty, $crate::__reader!($($reader)? ; $($sep)?)>(
                                args.$name,
                                $env,
                                None $(.or(Some($old_env)))?,
                                env,
                            )?
                            .or(file.$name)
                            $(, $default)?
                        ),
                    )*
                })
            }

            /// Every setting with its spellings, default and help, for docs and tests.
            pub fn catalogue() -> ::std::vec::Vec<$crate::Setting> {
                vec![
                    $(
                        $crate::Setting {
                            name: stringify!($name),
                            file_key: $file_key,
                            env: $env,
                            formerly: None $(.or(Some($crate::FormerSpelling {
                                key: $old_key,
                                flag: $old_flag,
                                env: $old_env,
                            })))?,
                            default: $shown,
                            help: [$($doc),+].join(" ").trim().to_string(),
                        },
                    )*
                ]
            }
        }
    };
}
