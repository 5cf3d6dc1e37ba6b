from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from consent.services import register_erase_handler, register_merge_handler
        from journeys import caps, hooks

        # Caps and arbitration run inside channels.services.send, after the consent gate.
        caps.register()
        hooks.connect()
        register_merge_handler("journeys", hooks.move_on_merge)
        register_erase_handler("journeys", hooks.redact_on_erase)
