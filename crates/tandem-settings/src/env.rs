use crate::{ConfigError, ReadSetting};

/// A setting given as a flag or through its environment variable, else through the environment
/// variable of its former spelling; both variables at once is an error.
pub fn given_or_former_env<T, R: ReadSetting<T>>(
    given: Option<T>,
    env_name: &str,
    former_env_name: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<T>, ConfigError> {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    let Some((former_name, text)) = former_env_name.and_then(|name| Some((name, set(name)?)))
    else {
        return Ok(given);
    };
    if set(env_name).is_some() {
        return Err(ConfigError(format!(
            "{env_name} and {former_name} are both set; they are the same setting, so keep only {env_name}"
        )));
    }
    match given {
        Some(value) => Ok(Some(value)),
        None => R::text(&text)
            .map(Some)
            .map_err(|e| ConfigError(format!("{former_name}: {e}"))),
    }
}
