from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels and messages"

    def ready(self) -> None:
        from anymail.signals import tracking
        from django.db.models.signals import post_delete, post_save

        from channels import handlers, outbound_webhooks, webhooks
        from channels.models import WebhookEndpoint
        from consent import services as consent_services
        from consent.signals import consent_recorded

        tracking.connect(webhooks.anymail_tracking_received, dispatch_uid="channels.anymail_tracking")
        consent_recorded.connect(outbound_webhooks.consent_changed_emit, dispatch_uid="channels.webhooks_consent")
        post_save.connect(_clear_endpoint_cache, sender=WebhookEndpoint, dispatch_uid="channels.webhooks_cache_save")
        post_delete.connect(_clear_endpoint_cache, sender=WebhookEndpoint, dispatch_uid="channels.webhooks_cache_del")
        consent_services.register_merge_handler("channels", handlers.contact_merged)
        consent_services.register_erase_handler("channels", handlers.contact_erased)


def _clear_endpoint_cache(**_kwargs) -> None:
    # An endpoint saved in this process (admin, shell) is seen at once here; others within the cache's seconds.
    from channels.outbound_webhooks import endpoints_cache_clear

    endpoints_cache_clear()
