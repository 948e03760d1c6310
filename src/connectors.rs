//! The protocols this build of patchbay speaks: one line per connector crate.

use std::collections::BTreeMap;
use std::sync::Arc;

use patchbay_sdk::ConnectorFactory;

/// The connector factories by protocol name.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
}

impl Registry {
    /// Every connector compiled into this binary.
    pub fn builtin() -> Self {
        let mut registry = Registry::default();
        registry.register(Arc::new(patchbay_console::ConsoleFactory));
        registry.register(Arc::new(patchbay_irc::IrcFactory));
        registry.register(Arc::new(patchbay_sshchat::SshChatFactory));
        registry.register(Arc::new(patchbay_webhook::WebhookFactory));
        registry.register(Arc::new(patchbay_api::ApiFactory));
        #[cfg(feature = "matrix")]
        registry.register(patchbay_matrix::factory());
        registry
    }

    pub fn register(&mut self, factory: Arc<dyn ConnectorFactory>) {
        self.factories.insert(factory.protocol(), factory);
    }

    pub fn get(&self, protocol: &str) -> Option<&Arc<dyn ConnectorFactory>> {
        self.factories.get(protocol)
    }

    /// Every factory's [`ConnectorFactory::quiet_log_directives`].
    pub fn quiet_log_directives(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories
            .values()
            .flat_map(|factory| factory.quiet_log_directives().iter().copied())
    }

    pub fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }
}
