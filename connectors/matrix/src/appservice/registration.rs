//! The application service's tokens and the registration file the homeserver loads.
//!
//! The two tokens are random (256 bits each), made once, the first time either the gateway or
//! `patchbay matrix-registration` needs them, and kept in `<data>/appservice.json` (mode 0600):
//! the registration written later still matches what the running gateway checks, and a
//! restart never invalidates the file an admin installed.

use std::path::{Path, PathBuf};

use patchbay_sdk::AccountInfo;
use serde::{Deserialize, Serialize};

use super::config::AppServiceConfig;
use super::naming::regex_escape;
use crate::config::AccountConfig;

/// The tokens shared with the homeserver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// What patchbay presents to the homeserver.
    pub as_token: String,
    /// What the homeserver presents to patchbay.
    pub hs_token: String,
}

/// Why a registration could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("there is no [{0}] table in the config")]
    NoAccount(String),
    #[error("[{account}] {source}")]
    Config {
        account: String,
        source: patchbay_sdk::ConfigError,
    },
    #[error("[{0}] is not an application service: set mode = \"appservice\"")]
    NotAppService(String),
    #[error("cannot keep the tokens in {path}: {source}")]
    Tokens {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join("appservice.json")
}

fn random_token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// The account's tokens, made and saved on first use.
pub fn load_or_create_tokens(data_dir: &Path) -> Result<Tokens, RegistrationError> {
    let path = tokens_path(data_dir);
    let error = |source| RegistrationError::Tokens {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            return serde_json::from_slice(&bytes)
                .map_err(|e| error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(error)?;
    let tokens = Tokens {
        as_token: random_token(),
        hs_token: random_token(),
    };
    let json = serde_json::to_vec_pretty(&tokens).map_err(|e| error(std::io::Error::other(e)))?;
    crate::state::write_private(&path, &json).map_err(error)?;
    Ok(tokens)
}

/// A YAML double-quoted scalar (JSON string escapes are valid YAML).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The registration file's text.
pub fn registration_yaml(config: &AppServiceConfig, tokens: &Tokens) -> String {
    let server = regex_escape(&config.server_name);
    let ghosts = format!(
        "@{}.*:{server}",
        regex_escape(config.ghost_template.prefix())
    );
    let bot = format!("@{}:{server}", regex_escape(&config.bot_localpart));
    format!(
        "# Written by `patchbay matrix-registration`; add this file to the homeserver's\n\
         # app_service_config_files and restart it.\n\
         id: {id}\n\
         url: {url}\n\
         as_token: {as_token}\n\
         hs_token: {hs_token}\n\
         sender_localpart: {sender}\n\
         rate_limited: false\n\
         namespaces:\n  \
           users:\n    \
             - exclusive: true\n      \
               regex: {ghosts}\n    \
             - exclusive: true\n      \
               regex: {bot}\n  \
           aliases: []\n  \
           rooms: []\n",
        id = quoted(&config.id),
        url = quoted(&config.url),
        as_token = quoted(&tokens.as_token),
        hs_token = quoted(&tokens.hs_token),
        sender = quoted(&config.bot_localpart),
        ghosts = quoted(&ghosts),
        bot = quoted(&bot),
    )
}

/// The registration for an account table: validates it, makes the tokens if the account has
/// none yet (in `account.data_dir`), and returns the file's text.
pub fn registration_for_table(
    account: &AccountInfo,
    table: toml::Table,
) -> Result<String, RegistrationError> {
    let config = match AccountConfig::from_table(account, table) {
        Ok(AccountConfig::AppService(config)) => config,
        Ok(AccountConfig::Bot(_)) => {
            return Err(RegistrationError::NotAppService(account.account.clone()));
        }
        Err(source) => {
            return Err(RegistrationError::Config {
                account: account.account.clone(),
                source,
            });
        }
    };
    let tokens = load_or_create_tokens(&account.data_dir)?;
    Ok(registration_yaml(&config, &tokens))
}

/// `patchbay matrix-registration`: the registration of account `account` (`matrix.NAME`) of
/// the config file `config_file`, whose data directory the gateway puts at `data_dir`.
///
/// The table is read as written (`${VAR}` references are not expanded here).
pub fn write_registration(
    config_file: &Path,
    account: &str,
    data_dir: &Path,
) -> Result<String, RegistrationError> {
    let text = std::fs::read_to_string(config_file).map_err(|source| RegistrationError::Read {
        path: config_file.to_owned(),
        source,
    })?;
    let root: toml::Table = toml::from_str(&text).map_err(|source| RegistrationError::Toml {
        path: config_file.to_owned(),
        source,
    })?;
    let name = account.strip_prefix("matrix.").unwrap_or(account);
    let table = root
        .get("matrix")
        .and_then(|m| m.get(name))
        .and_then(|t| t.as_table())
        .cloned()
        .ok_or_else(|| RegistrationError::NoAccount(format!("matrix.{name}")))?;
    let info = AccountInfo {
        account: format!("matrix.{name}"),
        config_dir: config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
        data_dir: data_dir.to_owned(),
    };
    registration_for_table(&info, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("accounts/matrix.home");
        let first = load_or_create_tokens(&data).expect("tokens");
        assert_eq!(first.as_token.len(), 64);
        assert_ne!(first.as_token, first.hs_token);
        assert_eq!(load_or_create_tokens(&data).expect("tokens"), first);
    }

    #[test]
    fn the_registration_names_the_namespaces_and_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("patchbay.toml");
        std::fs::write(
            &config,
            "[matrix.home]\nmode = \"appservice\"\nhomeserver = \"http://127.0.0.1:8008\"\n\
             server_name = \"example.org\"\nappservice_url = \"http://127.0.0.1:9000\"\n",
        )
        .expect("write");
        let data = dir.path().join("data");
        let yaml = write_registration(&config, "matrix.home", &data).expect("registration");
        let tokens = load_or_create_tokens(&data).expect("tokens");
        assert!(
            yaml.contains(&format!("as_token: \"{}\"", tokens.as_token)),
            "{yaml}"
        );
        assert!(yaml.contains("id: \"patchbay-home\""), "{yaml}");
        assert!(yaml.contains("url: \"http://127.0.0.1:9000/_patchbay/matrix/home\""));
        assert!(yaml.contains("sender_localpart: \"patchbay\""));
        assert!(yaml.contains("rate_limited: false"));
        assert!(
            yaml.contains(r#"regex: "@_patchbay_.*:example\\.org""#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"regex: "@patchbay:example\\.org""#),
            "{yaml}"
        );
        assert!(matches!(
            write_registration(&config, "matrix.other", &data),
            Err(RegistrationError::NoAccount(_))
        ));
    }
}
