"""Provider adapters: one module per provider behind `base.Provider`."""
