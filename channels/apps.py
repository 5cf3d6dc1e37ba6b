from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels and messages"

    def ready(self) -> None:
        from anymail.signals import tracking

        from channels import handlers, webhooks
        from consent import services as consent_services

        tracking.connect(webhooks.anymail_tracking_received, dispatch_uid="channels.anymail_tracking")
        consent_services.register_merge_handler("channels", handlers.contact_merged)
        consent_services.register_erase_handler("channels", handlers.contact_erased)
