// The one table of channel kinds. Every folder under `providers/` that holds a kind has one entry
// here: the folder, then its kinds, one line each (`<kind> if "<cargo feature>" when
// "<TRIGGER>" => <PARTS>`), in the order the environment shortcuts are read and `setup` lists
// them.
//
// - `<kind>` is the `kind` of a provider entry; the folder's `kind.rs` describes it in the
//   constant `<PARTS>` (a `config::KindParts`).
// - The folder is compiled when one of its kinds' features is on (`always`: in every build, for
//   the folders the factory itself uses). A kind whose feature is off is still listed, as a
//   stand-in naming the feature, so an enabled entry of it fails the load with one line saying so.
// - `<TRIGGER>` is the variable, after `OPEN_COWORK_GATEWAY_`, that configures the kind from the
//   environment: set in a build without the kind, it fails the load instead of being ignored
//   (empty for the fake provider, which is added only when nothing else is configured).
//
// Adding a channel: its folder (the channel, `kind.rs`, and `conformance.rs`, which the channel
// conformance battery in `tests/gateway/` runs) and one entry here. This file is read twice:
// by `providers/mod.rs`, which declares the folders and builds the table, and by the battery,
// which runs every folder's `conformance.rs`; so it holds this one macro call and nothing else.

kinds! {
    telegram { telegram if "telegram" when "TELEGRAM_BOT_TOKEN" => KIND }
    slack { slack if "slack" when "SLACK_BOT_TOKEN" => KIND }
    email { email if "email" when "EMAIL_INBOUND_SECRET" => KIND }
    webhook {
        webhook if "webhook" when "WEBHOOK_DELIVERY_URL" => RELAY
        discord if "bridges" when "DISCORD_DELIVERY_URL" => RELAY
        whatsapp if "bridges" when "WHATSAPP_DELIVERY_URL" => RELAY
        signal if "bridges" when "SIGNAL_DELIVERY_URL" => RELAY
    }
    cli always { cli if "cli" when "CLI_ENABLED" => KIND }
    fake always { fake if "devcloud" when "" => KIND }
}
