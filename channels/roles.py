from config.roles import AGENT, MARKETER, OPERATOR, REVIEWER

_LOG = ["channels.view_outboundmessage", "channels.view_deliveryevent", "channels.view_sendintent",
        "channels.view_inboundmessage"]
# Operators manage outbound webhooks: endpoints (rotate, enable, disable) and
# deliveries (change_webhookdelivery is "replay").
_WEBHOOKS = ["channels.view_webhookendpoint", "channels.add_webhookendpoint", "channels.change_webhookendpoint",
             "channels.delete_webhookendpoint", "channels.view_webhookdelivery", "channels.change_webhookdelivery",
             "channels.view_webhookattempt"]

ROLE_PERMISSIONS = {
    # add_outboundmessage is the test-send page (drafts to internal seed addresses only).
    MARKETER: [*_LOG, "channels.add_outboundmessage"],
    REVIEWER: [*_LOG, "channels.add_outboundmessage", "channels.view_provideraccount"],
    # Agents see a customer's messages through their cases (support app),
    # never the whole log or every inbound reply.
    AGENT: [],
    # change_outboundmessage is "cancel a message not yet handed to a provider".
    OPERATOR: [*_LOG, "channels.change_outboundmessage", "channels.view_provideraccount",
               "channels.add_provideraccount", "channels.change_provideraccount", *_WEBHOOKS],
}
