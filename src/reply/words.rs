//! The words of the text rules, in the languages they read: quote headers' verbs and openers, separators,
//! forwarding lines, header fields and mobile clients' last lines.

/// The verbs that end a quote header ("On Mon, Ann wrote:", "Am … schrieb Ann:", "Ann пише:").
pub(super) const WROTE: &[&str] = &[
    "wrote",       // English
    "writes",      // English (some clients)
    "schrieb",     // German
    "a écrit",     // French
    "escribió",    // Spanish
    "написал",     // Russian
    "написала",    // Russian, Ukrainian
    "написал(а)",  // Russian
    "пише",        // Ukrainian
    "написав",     // Ukrainian
    "написав(ла)", // Ukrainian
    "ha scritto",  // Italian
    "escreveu",    // Portuguese
    "schreef",     // Dutch
    "geschreven",  // Dutch ("heeft … het volgende geschreven")
    "napisał",     // Polish
    "napisała",    // Polish
    "napisał(a)",  // Polish
    "skrev",       // Danish, Norwegian, Swedish
    "kirjoitti",   // Finnish
    "yazdı",       // Turkish
    "napsal",      // Czech
    "írta",        // Hungarian
    "đã viết",     // Vietnamese
];

/// What a line of dashes says around "-----Original Message-----", in the languages of the quote headers.
pub(super) const ORIGINAL: &[&str] = &[
    "original message",
    "reply message",
    "ursprüngliche nachricht",
    "originalnachricht",
    "antwort nachricht",
    "message d'origine",
    "mensaje original",
    "исходное сообщение",
    "оригінальне повідомлення",
    "вихідне повідомлення",
    "messaggio originale",
    "mensagem original",
    "oorspronkelijk bericht",
    "origineel bericht",
    "oprindelig meddelelse",
    "opprinnelig melding",
    "ursprungligt meddelande",
    "alkuperäinen viesti",
    "oryginalna wiadomość",
    "původní zpráva",
];

/// A forwarded message's first line ("---------- Forwarded message ---------", Apple's "Begin forwarded message:").
pub(super) const FORWARDED: &[&str] = &[
    "forwarded message",
    "begin forwarded message",
    "vidarebefordrat meddelande",
    "videresendt meddelelse",
    "videresendt melding",
    "välitetty viesti",
    "přeposlaná zpráva",
    "wiadomość przekazana",
    "début du message réexpédié",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "пересылаемое сообщение",
    "пересланное сообщение",
    "переслане повідомлення",
    "messaggio inoltrato",
    "mensagem encaminhada",
    "doorgestuurd bericht",
];

/// The labels of an Outlook header block: From, then Sent or Date, To, Subject.
pub(super) const FROM: &[&str] = &["from", "von", "de", "от", "від", "da", "van", "od", "från", "fra"];
pub(super) const SENT: &[&str] = &[
    "sent",
    "date",
    "gesendet",
    "datum",
    "envoyé",
    "date d'envoi",
    "enviado",
    "enviado el",
    "fecha",
    "отправлено",
    "дата",
    "надіслано",
    "inviato",
    "data",
    "verzonden",
    "sendt",
    "skickat",
    "lähetetty",
    "wysłano",
    "odesláno",
];
pub(super) const TO: &[&str] = &["to", "an", "à", "para", "кому", "a", "aan", "do", "till", "til"];
pub(super) const SUBJECT: &[&str] =
    &["subject", "betreff", "objet", "asunto", "тема", "oggetto", "assunto", "onderwerp", "temat", "ämne", "emne"];

/// A mobile client's line that ends what the sender wrote.
pub(super) const SENT_FROM: &[&str] = &[
    "sent from my ",
    "sent from outlook",
    "sent from mail for windows",
    "get outlook for ",
    "sent from yahoo mail",
    "von meinem ",
    "envoyé de mon ",
    "enviado desde mi ",
    "enviado do meu ",
    "отправлено с ",
    "надіслано з ",
    "inviato da ",
];

/// The words that open a quote header in the languages of `WROTE`.
pub(super) const OPENERS: &[&str] = &["On ", "Am ", "Le ", "El ", "Op ", "Il ", "Em ", "Den ", "W dniu "];
