# ruff: noqa: RUF001
"""Message catalogue of the buyer-facing return policy page, one dict per language.

Every language has every message id (a test checks it). Messages are `str.format`
templates with named fields; the same fields in every language. Ids ending in `_one`
and `_other` are plural forms picked by the language's plural rule (Babel). Legal
sentences follow the wording of the official model withdrawal information of each
language where there is one (Directive 2011/83/EU, Annex I).

Style: German "Sie", French "vous", Spanish and Italian "tú"/"tu" as in most shops of
those markets, Japanese polite form (です・ます), Chinese 您. Buyer's-choice returns are
named by what they are for the buyer: the item has nothing wrong with it.
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "en"

EN: dict[str, str] = {
    "title": "Return policy – {shop}",
    "intro": (
        "Before you buy, here is what you need to know about returns: how long you have, "
        "what condition items must be in, what it costs and when you get your money back."
    ),
    "h_window": "Return window",
    "h_condition": "Condition of returned items",
    "h_costs": "Return shipping and fees",
    "h_damaged": "Damaged, defective or wrong items",
    "h_exclusions": "Items that cannot be returned",
    "h_start": "How to start a return",
    "h_refund": "Refunds",
    "h_legal": "Your statutory rights",
    "period_days_one": "{n}\u00a0day",
    "period_days_other": "{n}\u00a0days",
    "period_years_one": "{n}\u00a0year",
    "period_years_other": "{n}\u00a0years",
    "quote": "“{text}”",
    "window_days": "You can return items within {period} of delivery.",
    "window_reasons_note": (
        "This applies to returns where nothing is wrong with the item, for example if you "
        "changed your mind or the size doesn't fit."
    ),
    "window_none": (
        "We do not accept returns of items that have nothing wrong with them, for example "
        "if you changed your mind. Damaged, defective or wrong items are covered below."
    ),
    "cond_required": (
        "Please return items unused, complete with all parts and accessories, and in their "
        "original packaging."
    ),
    "cond_opened_fee": (
        "Opened or used items can still be returned, but a restocking fee of {percent} "
        "then applies."
    ),
    "cond_legal_check": (
        "You may examine an item as you would in a shop. You are only liable for any loss "
        "in value caused by handling it more than necessary to establish its nature, "
        "characteristics and functioning."
    ),
    "costs_buyer_pays": (
        "If nothing is wrong with the item (for example, you changed your mind or the size "
        "doesn't fit), you pay the direct cost of sending it back."
    ),
    "costs_seller_pays": "Sending an item back is free, even if nothing is wrong with it.",
    "costs_fault_free": "If an item is damaged, defective or wrong, we pay the return shipping.",
    "costs_fault_buyer": (
        "You also pay the return shipping for damaged, defective or wrong items."
    ),
    "fee_opened": (
        "If an item comes back opened or used, we deduct a restocking fee of {percent} of "
        "the item price."
    ),
    "fee_opened_cap": (
        "If an item comes back opened or used, we deduct a restocking fee of {percent} of "
        "the item price, at most {cap}."
    ),
    "fee_always": (
        "If nothing is wrong with the item, we deduct a restocking fee of {percent} of the "
        "item price."
    ),
    "fee_always_cap": (
        "If nothing is wrong with the item, we deduct a restocking fee of {percent} of the "
        "item price, at most {cap}."
    ),
    "fee_none": "We do not charge a restocking fee.",
    "fee_fault_none": "No restocking fee applies to damaged, defective or wrong items.",
    "fee_legal_opened": (
        "If you withdraw within {days} days of delivery, we deduct it only for a loss in "
        "value caused by handling the item more than necessary to examine it."
    ),
    "fee_legal_always": "It is not charged if you withdraw within {days} days of delivery.",
    "fault_intro": (
        "If an item arrives damaged, is defective or incomplete, is not as described, or is "
        "not what you ordered, start a return and choose the matching reason."
    ),
    "fault_window": (
        "You can report damaged, defective or wrong items up to {period} after delivery."
    ),
    "fault_none": "We do not accept returns of damaged, defective or wrong items.",
    "evidence": "When the reason is {reasons}, please send us {items}.",
    "ev_photos_one": "one photo",
    "ev_photos_other": "{n} photos",
    "ev_video": "a video",
    "ev_explanation": "a short description of the problem",
    "reason_defective": "Defective",
    "reason_not_as_described": "Not as described",
    "reason_damaged_in_transit": "Damaged in transit",
    "reason_wrong_item": "Wrong item",
    "reason_missing_parts": "Missing parts",
    "excl_intro": "The following items cannot be returned:",
    "excl_categories_one": "Items in the category {categories}",
    "excl_categories_other": "Items in the categories {categories}",
    "excl_skus": "Some individual products",
    "excl_value": "Items with a {value}",
    "excl_with_value": "{what} with a {value}",
    "value_below": "value under {amount}",
    "value_from": "value of {amount} or more",
    "value_between": "value of at least {min} and under {max}",
    "excl_no_fault_only": "{item} (only if nothing is wrong with the item)",
    "excl_legal_note": (
        "Within {days} days of delivery, we also accept withdrawals for these items."
    ),
    "start_online": "Start your return on our returns page:",
    "start_steps": (
        "Choose the items and the reason, and we will send you the return instructions."
    ),
    "start_contact": (
        "To start a return, contact our customer service with your order number, the items "
        "you want to return and the reason."
    ),
    "refund_standard": (
        "We refund you within {days} days of receiving your return, to the payment method "
        "you used for the order."
    ),
    "refund_legal": (
        "If you withdraw within the legal period, we refund all payments we received from "
        "you, including the standard delivery costs, within {days} days of the day we are "
        "informed of your decision, using the same payment method you used. We may "
        "withhold the refund until we have received the goods back or you have supplied "
        "proof of having sent them, whichever is earlier."
    ),
    "refund_legal_extra": (
        "If you chose a delivery option more expensive than our cheapest standard delivery, "
        "we do not refund the extra cost."
    ),
    "refund_after_legal": (
        "For returns after the legal withdrawal period, we refund you within {days} days of "
        "receiving your return, to the payment method you used for the order."
    ),
    "outbound_no": (
        "If nothing is wrong with the item, the original delivery charge is not refunded."
    ),
    "outbound_yes": "We also refund the original delivery charge.",
    "outbound_no_after_legal": "In that case, the original delivery charge is not refunded.",
    "outbound_fault_yes": (
        "If an item is damaged, defective or wrong, we also refund the original delivery charge."
    ),
    "outbound_fault_no": (
        "If an item is damaged, defective or wrong, we refund the price of the item but not "
        "the original delivery charge."
    ),
    "inspect_min": ("Items worth {amount} or more are inspected on arrival before we refund them."),
    "inspect_all": "Every return is inspected on arrival before we refund it.",
    "inspect_total": (
        "A return worth {amount} or more in total is inspected on arrival before we refund it."
    ),
    "ship_tracked": "Please send them back with a tracked shipping service.",
    "ship_signature": (
        "Please send them back with a tracked shipping service that requires a signature "
        "on delivery."
    ),
    "returnless_below": (
        "For items worth less than {amount}, we may refund you without asking for the item "
        "back, when sending it back would cost more than it is worth."
    ),
    "returnless_any": (
        "For low-value items, we may refund you without asking for the item back, when "
        "sending it back would cost more than it is worth."
    ),
    "legal_withdrawal": (
        "You have the right to withdraw from your purchase within {days} days without "
        "giving any reason. The period starts on the day you, or a person you name other "
        "than the carrier, take physical possession of the goods; for an order delivered "
        "in several parts, on the day you receive the last part."
    ),
    "legal_how": (
        "To withdraw, tell us of your decision with a clear statement before the period "
        "ends, for example by starting a return or by email. You must then send the goods "
        "back within {days} days of telling us."
    ),
    "legal_guarantee_eu": (
        "Your legal guarantee rights for faulty goods (at least {years} years from "
        "delivery) are not affected."
    ),
    "legal_guarantee_uk": (
        "Under UK law, you can reject faulty goods within {days} days of delivery and get a "
        "refund. Your other statutory rights are not affected."
    ),
    "legal_general": (
        "If you live in the EU, the EEA or the UK, you also have the legal right to "
        "withdraw from your purchase within {days} days of delivery without giving any "
        "reason, and the refund then includes the standard delivery costs. These rights "
        "apply even where this policy says otherwise."
    ),
}

DE: dict[str, str] = {
    "title": "Rückgabebedingungen – {shop}",
    "intro": (
        "Bevor Sie bestellen, finden Sie hier alles Wichtige zur Rückgabe: wie lange Sie "
        "Zeit haben, in welchem Zustand die Ware sein sollte, was eine Rücksendung kostet "
        "und wann Sie Ihr Geld zurückerhalten."
    ),
    "h_window": "Rückgabefrist",
    "h_condition": "Zustand der Ware",
    "h_costs": "Rücksendekosten und Gebühren",
    "h_damaged": "Beschädigte, defekte oder falsche Artikel",
    "h_exclusions": "Von der Rückgabe ausgeschlossene Artikel",
    "h_start": "So starten Sie eine Rücksendung",
    "h_refund": "Erstattung",
    "h_legal": "Ihre gesetzlichen Rechte",
    "period_days_one": "{n}\u00a0Tag",
    "period_days_other": "{n}\u00a0Tage",
    "period_years_one": "{n}\u00a0Jahr",
    "period_years_other": "{n}\u00a0Jahre",
    "quote": "„{text}“",
    "window_days": "Die Rückgabefrist beträgt {period} ab Lieferung.",
    "window_reasons_note": (
        "Das gilt für Rücksendungen, bei denen mit dem Artikel alles in Ordnung ist, etwa "
        "wenn Sie es sich anders überlegt haben oder die Größe nicht passt."
    ),
    "window_none": (
        "Artikel, mit denen alles in Ordnung ist – etwa wenn Sie es sich anders überlegt "
        "haben –, nehmen wir nicht zurück. Zu beschädigten, defekten oder falschen Artikeln "
        "siehe unten."
    ),
    "cond_required": (
        "Bitte senden Sie Artikel unbenutzt, vollständig mit allen Teilen und Zubehör und "
        "in der Originalverpackung zurück."
    ),
    "cond_opened_fee": (
        "Geöffnete oder benutzte Artikel können Sie trotzdem zurücksenden; dann fällt "
        "jedoch eine Wiedereinlagerungsgebühr von {percent} an."
    ),
    "cond_legal_check": (
        "Sie dürfen die Ware so prüfen, wie Sie es in einem Geschäft tun könnten. Sie "
        "müssen für einen Wertverlust nur aufkommen, wenn er auf einen zur Prüfung der "
        "Beschaffenheit, Eigenschaften und Funktionsweise der Ware nicht notwendigen Umgang "
        "zurückzuführen ist."
    ),
    "costs_buyer_pays": (
        "Ist mit dem Artikel alles in Ordnung (Sie haben es sich etwa anders überlegt oder "
        "die Größe passt nicht), tragen Sie die unmittelbaren Kosten der Rücksendung."
    ),
    "costs_seller_pays": (
        "Die Rücksendung ist für Sie kostenlos, auch wenn mit dem Artikel alles in Ordnung ist."
    ),
    "costs_fault_free": (
        "Ist ein Artikel beschädigt, defekt oder falsch, übernehmen wir die Rücksendekosten."
    ),
    "costs_fault_buyer": (
        "Auch bei beschädigten, defekten oder falschen Artikeln tragen Sie die Rücksendekosten."
    ),
    "fee_opened": (
        "Kommt ein Artikel geöffnet oder benutzt zurück, behalten wir eine "
        "Wiedereinlagerungsgebühr von {percent} des Artikelpreises ein."
    ),
    "fee_opened_cap": (
        "Kommt ein Artikel geöffnet oder benutzt zurück, behalten wir eine "
        "Wiedereinlagerungsgebühr von {percent} des Artikelpreises ein, höchstens jedoch "
        "{cap}."
    ),
    "fee_always": (
        "Ist mit dem Artikel alles in Ordnung, behalten wir eine Wiedereinlagerungsgebühr "
        "von {percent} des Artikelpreises ein."
    ),
    "fee_always_cap": (
        "Ist mit dem Artikel alles in Ordnung, behalten wir eine Wiedereinlagerungsgebühr "
        "von {percent} des Artikelpreises ein, höchstens jedoch {cap}."
    ),
    "fee_none": "Eine Wiedereinlagerungsgebühr berechnen wir nicht.",
    "fee_fault_none": (
        "Für beschädigte, defekte oder falsche Artikel fällt keine Wiedereinlagerungsgebühr an."
    ),
    "fee_legal_opened": (
        "Bei einem Widerruf innerhalb von {days} Tagen nach Lieferung behalten wir sie nur "
        "für einen Wertverlust ein, der auf einen zur Prüfung der Ware nicht notwendigen "
        "Umgang zurückzuführen ist."
    ),
    "fee_legal_always": (
        "Bei einem Widerruf innerhalb von {days} Tagen nach Lieferung fällt sie nicht an."
    ),
    "fault_intro": (
        "Ist ein Artikel beschädigt angekommen, defekt oder unvollständig, entspricht er "
        "nicht der Beschreibung oder haben Sie einen falschen Artikel erhalten, starten Sie "
        "eine Rücksendung und wählen Sie den passenden Grund."
    ),
    "fault_window": (
        "Beschädigte, defekte oder falsche Artikel können Sie bis zu {period} nach der "
        "Lieferung melden."
    ),
    "fault_none": "Beschädigte, defekte oder falsche Artikel nehmen wir nicht zurück.",
    "evidence": "Wenn Sie als Grund {reasons} angeben, senden Sie uns bitte {items}.",
    "ev_photos_one": "ein Foto",
    "ev_photos_other": "{n} Fotos",
    "ev_video": "ein Video",
    "ev_explanation": "eine kurze Beschreibung des Problems",
    "reason_defective": "Defekt",
    "reason_not_as_described": "Entspricht nicht der Beschreibung",
    "reason_damaged_in_transit": "Beim Versand beschädigt",
    "reason_wrong_item": "Falscher Artikel",
    "reason_missing_parts": "Teile fehlen",
    "excl_intro": "Folgende Artikel sind von der Rückgabe ausgeschlossen:",
    "excl_categories_one": "Artikel der Kategorie {categories}",
    "excl_categories_other": "Artikel der Kategorien {categories}",
    "excl_skus": "Einzelne ausgewählte Produkte",
    "excl_value": "Artikel mit einem {value}",
    "excl_with_value": "{what} mit einem {value}",
    "value_below": "Wert unter {amount}",
    "value_from": "Wert ab {amount}",
    "value_between": "Wert ab {min} und unter {max}",
    "excl_no_fault_only": "{item} (nur wenn mit dem Artikel alles in Ordnung ist)",
    "excl_legal_note": (
        "Innerhalb von {days} Tagen nach Lieferung nehmen wir auch diese Artikel im Rahmen "
        "Ihres Widerrufsrechts zurück."
    ),
    "start_online": "Starten Sie Ihre Rücksendung auf unserer Retourenseite:",
    "start_steps": (
        "Wählen Sie die Artikel und den Grund aus; anschließend erhalten Sie von uns die "
        "Anleitung für die Rücksendung."
    ),
    "start_contact": (
        "Für eine Rücksendung wenden Sie sich bitte an unseren Kundenservice und nennen Sie "
        "uns Ihre Bestellnummer, die Artikel, die Sie zurücksenden möchten, und den Grund."
    ),
    "refund_standard": (
        "Wir erstatten den Betrag innerhalb von {days} Tagen nach Eingang Ihrer Rücksendung "
        "über das Zahlungsmittel, mit dem Sie bezahlt haben."
    ),
    "refund_legal": (
        "Wenn Sie innerhalb der gesetzlichen Frist widerrufen, erstatten wir Ihnen alle "
        "Zahlungen, die wir von Ihnen erhalten haben, einschließlich der "
        "Standardlieferkosten, spätestens binnen {days} Tagen ab dem Tag, an dem Ihre "
        "Mitteilung über den Widerruf bei uns eingegangen ist, über dasselbe Zahlungsmittel, "
        "das Sie bei der Bestellung verwendet haben. Wir können die Rückzahlung verweigern, "
        "bis wir die Waren wieder zurückerhalten haben oder bis Sie den Nachweis erbracht "
        "haben, dass Sie die Waren zurückgesandt haben, je nachdem, welches der frühere "
        "Zeitpunkt ist."
    ),
    "refund_legal_extra": (
        "Haben Sie eine teurere Lieferart als unsere günstigste Standardlieferung gewählt, "
        "erstatten wir die Mehrkosten nicht."
    ),
    "refund_after_legal": (
        "Bei Rücksendungen nach Ablauf der gesetzlichen Widerrufsfrist erstatten wir den "
        "Betrag innerhalb von {days} Tagen nach Eingang Ihrer Rücksendung über das "
        "Zahlungsmittel, mit dem Sie bezahlt haben."
    ),
    "outbound_no": (
        "Ist mit dem Artikel alles in Ordnung, erstatten wir die ursprünglichen "
        "Versandkosten nicht."
    ),
    "outbound_yes": "Die ursprünglichen Versandkosten erstatten wir ebenfalls.",
    "outbound_no_after_legal": (
        "In diesem Fall erstatten wir die ursprünglichen Versandkosten nicht."
    ),
    "outbound_fault_yes": (
        "Ist ein Artikel beschädigt, defekt oder falsch, erstatten wir auch die "
        "ursprünglichen Versandkosten."
    ),
    "outbound_fault_no": (
        "Ist ein Artikel beschädigt, defekt oder falsch, erstatten wir den Kaufpreis, "
        "aber nicht die ursprünglichen Versandkosten."
    ),
    "inspect_min": (
        "Artikel mit einem Wert ab {amount} prüfen wir nach Eingang, bevor wir den Betrag "
        "erstatten."
    ),
    "inspect_all": "Jede Rücksendung prüfen wir nach Eingang, bevor wir den Betrag erstatten.",
    "inspect_total": (
        "Eine Rücksendung mit einem Gesamtwert ab {amount} prüfen wir nach Eingang, bevor wir "
        "den Betrag erstatten."
    ),
    "ship_tracked": (
        "Bitte senden Sie diese Artikel mit einem Versanddienst mit Sendungsverfolgung zurück."
    ),
    "ship_signature": (
        "Bitte senden Sie diese Artikel mit einem Versanddienst mit Sendungsverfolgung und "
        "Zustellung gegen Unterschrift zurück."
    ),
    "returnless_below": (
        "Bei Artikeln mit einem Wert unter {amount} erstatten wir den Betrag unter "
        "Umständen, ohne dass Sie den Artikel zurücksenden müssen – wenn die Rücksendung "
        "mehr kosten würde, als der Artikel wert ist."
    ),
    "returnless_any": (
        "Bei geringwertigen Artikeln erstatten wir den Betrag unter Umständen, ohne dass "
        "Sie den Artikel zurücksenden müssen – wenn die Rücksendung mehr kosten würde, als "
        "der Artikel wert ist."
    ),
    "legal_withdrawal": (
        "Sie haben das Recht, Ihren Kauf binnen {days} Tagen ohne Angabe von Gründen zu "
        "widerrufen. Die Frist beginnt an dem Tag, an dem Sie oder ein von Ihnen benannter "
        "Dritter, der nicht der Beförderer ist, die Waren in Besitz genommen haben; bei "
        "einer Bestellung, die in mehreren Teilsendungen geliefert wird, an dem Tag, an dem "
        "Sie die letzte Teilsendung erhalten haben."
    ),
    "legal_how": (
        "Um zu widerrufen, teilen Sie uns Ihren Entschluss vor Ablauf der Frist mit einer "
        "eindeutigen Erklärung mit, zum Beispiel indem Sie eine Rücksendung starten oder "
        "uns eine E-Mail schreiben. Die Waren senden Sie dann spätestens binnen {days} "
        "Tagen ab dieser Mitteilung an uns zurück."
    ),
    "legal_guarantee_eu": (
        "Ihre gesetzlichen Gewährleistungsrechte bei mangelhafter Ware (mindestens "
        "{years}\u00a0Jahre ab Lieferung) bleiben unberührt."
    ),
    "legal_guarantee_uk": (
        "Nach britischem Recht können Sie mangelhafte Ware innerhalb von {days} Tagen nach "
        "Lieferung zurückweisen und erhalten den Kaufpreis zurück. Ihre übrigen "
        "gesetzlichen Rechte bleiben unberührt."
    ),
    "legal_general": (
        "Wenn Sie in der EU, im EWR oder im Vereinigten Königreich wohnen, haben Sie "
        "außerdem das gesetzliche Recht, Ihren Kauf binnen {days} Tagen nach Lieferung ohne "
        "Angabe von Gründen zu widerrufen; die Erstattung umfasst dann auch die "
        "Standardlieferkosten. Diese Rechte gelten auch dann, wenn diese Bedingungen etwas "
        "anderes vorsehen."
    ),
}

FR: dict[str, str] = {
    "title": "Politique de retour – {shop}",
    "intro": (
        "Avant d'acheter, voici l'essentiel sur les retours\u00a0: le délai dont vous "
        "disposez, l'état dans lequel les articles doivent être renvoyés, ce que cela coûte "
        "et quand vous êtes remboursé."
    ),
    "h_window": "Délai de retour",
    "h_condition": "État des articles retournés",
    "h_costs": "Frais de retour",
    "h_damaged": "Articles endommagés, défectueux ou erronés",
    "h_exclusions": "Articles non retournables",
    "h_start": "Comment effectuer un retour",
    "h_refund": "Remboursement",
    "h_legal": "Vos droits légaux",
    "period_days_one": "{n}\u00a0jour",
    "period_days_other": "{n}\u00a0jours",
    "period_years_one": "{n}\u00a0an",
    "period_years_other": "{n}\u00a0ans",
    "quote": "«\u00a0{text}\u00a0»",
    "window_days": (
        "Vous disposez de {period} à compter de la livraison pour retourner un article."
    ),
    "window_reasons_note": (
        "Cela vaut pour les retours d'articles qui ne présentent aucun problème, par exemple "
        "si vous avez changé d'avis ou si la taille ne convient pas."
    ),
    "window_none": (
        "Nous n'acceptons pas le retour d'articles qui ne présentent aucun problème, par "
        "exemple si vous avez changé d'avis. Pour les articles endommagés, défectueux ou "
        "erronés, voir ci-dessous."
    ),
    "cond_required": (
        "Merci de renvoyer les articles inutilisés, complets avec toutes leurs pièces et "
        "tous leurs accessoires, et dans leur emballage d'origine."
    ),
    "cond_opened_fee": (
        "Les articles ouverts ou utilisés peuvent tout de même être retournés, mais des "
        "frais de restockage de {percent} s'appliquent alors."
    ),
    "cond_legal_check": (
        "Vous pouvez examiner l'article comme vous le feriez en magasin. Votre "
        "responsabilité n'est engagée qu'à l'égard de la dépréciation des biens résultant "
        "de manipulations autres que celles nécessaires pour établir la nature, les "
        "caractéristiques et le bon fonctionnement de ces biens."
    ),
    "costs_buyer_pays": (
        "Si l'article ne présente aucun problème (par exemple, vous avez changé d'avis ou "
        "la taille ne convient pas), les frais directs de renvoi sont à votre charge."
    ),
    "costs_seller_pays": "Le renvoi est gratuit, même si l'article ne présente aucun problème.",
    "costs_fault_free": (
        "Si un article est endommagé, défectueux ou ne correspond pas à votre commande, "
        "nous prenons en charge les frais de retour."
    ),
    "costs_fault_buyer": (
        "Les frais de retour sont également à votre charge pour les articles endommagés, "
        "défectueux ou erronés."
    ),
    "fee_opened": (
        "Si un article nous revient ouvert ou utilisé, nous retenons des frais de "
        "restockage de {percent} du prix de l'article."
    ),
    "fee_opened_cap": (
        "Si un article nous revient ouvert ou utilisé, nous retenons des frais de "
        "restockage de {percent} du prix de l'article, dans la limite de {cap}."
    ),
    "fee_always": (
        "Si l'article ne présente aucun problème, nous retenons des frais de restockage de "
        "{percent} du prix de l'article."
    ),
    "fee_always_cap": (
        "Si l'article ne présente aucun problème, nous retenons des frais de restockage de "
        "{percent} du prix de l'article, dans la limite de {cap}."
    ),
    "fee_none": "Nous ne facturons pas de frais de restockage.",
    "fee_fault_none": (
        "Aucuns frais de restockage ne s'appliquent aux articles endommagés, défectueux ou erronés."
    ),
    "fee_legal_opened": (
        "En cas de rétractation dans les {days}\u00a0jours suivant la livraison, nous ne "
        "les retenons qu'en cas de dépréciation due à des manipulations allant au-delà de "
        "ce qui est nécessaire pour examiner l'article."
    ),
    "fee_legal_always": (
        "Ils ne s'appliquent pas en cas de rétractation dans les {days}\u00a0jours suivant "
        "la livraison."
    ),
    "fault_intro": (
        "Si un article arrive endommagé, est défectueux ou incomplet, ne correspond pas à "
        "sa description ou n'est pas celui que vous avez commandé, lancez un retour et "
        "choisissez le motif correspondant."
    ),
    "fault_window": (
        "Vous pouvez nous signaler un article endommagé, défectueux ou erroné jusqu'à "
        "{period} après la livraison."
    ),
    "fault_none": "Nous n'acceptons pas le retour d'articles endommagés, défectueux ou erronés.",
    "evidence": "Si le motif est {reasons}, merci de nous envoyer {items}.",
    "ev_photos_one": "une photo",
    "ev_photos_other": "{n}\u00a0photos",
    "ev_video": "une vidéo",
    "ev_explanation": "une brève description du problème",
    "reason_defective": "Défectueux",
    "reason_not_as_described": "Non conforme à la description",
    "reason_damaged_in_transit": "Endommagé pendant le transport",
    "reason_wrong_item": "Mauvais article",
    "reason_missing_parts": "Pièces manquantes",
    "excl_intro": "Les articles suivants ne peuvent pas être retournés\u00a0:",
    "excl_categories_one": "Les articles de la catégorie {categories}",
    "excl_categories_other": "Les articles des catégories {categories}",
    "excl_skus": "Certains produits spécifiques",
    "excl_value": "Les articles d'une {value}",
    "excl_with_value": "{what} d'une {value}",
    "value_below": "valeur inférieure à {amount}",
    "value_from": "valeur de {amount} ou plus",
    "value_between": "valeur d'au moins {min} et inférieure à {max}",
    "excl_no_fault_only": "{item} (uniquement si l'article ne présente aucun problème)",
    "excl_legal_note": (
        "Dans les {days}\u00a0jours suivant la livraison, nous acceptons également la "
        "rétractation pour ces articles."
    ),
    "start_online": "Lancez votre retour sur notre page dédiée\u00a0:",
    "start_steps": (
        "Sélectionnez les articles et le motif\u00a0; nous vous enverrons ensuite les "
        "instructions de retour."
    ),
    "start_contact": (
        "Pour effectuer un retour, contactez notre service client en indiquant votre "
        "numéro de commande, les articles à retourner et le motif du retour."
    ),
    "refund_standard": (
        "Nous vous remboursons dans les {days}\u00a0jours suivant la réception de votre "
        "retour, via le moyen de paiement utilisé pour la commande."
    ),
    "refund_legal": (
        "Si vous vous rétractez dans le délai légal, nous vous remboursons tous les "
        "paiements reçus de votre part, y compris les frais de livraison standard, au plus "
        "tard {days}\u00a0jours à compter du jour où nous sommes informés de votre décision "
        "de rétractation, en utilisant le même moyen de paiement que celui utilisé pour la "
        "commande. Nous pouvons différer le remboursement jusqu'à réception des biens ou "
        "jusqu'à ce que vous ayez fourni une preuve d'expédition des biens, la date retenue "
        "étant celle du premier de ces faits."
    ),
    "refund_legal_extra": (
        "Si vous avez choisi un mode de livraison plus coûteux que notre livraison standard "
        "la moins chère, le supplément ne vous est pas remboursé."
    ),
    "refund_after_legal": (
        "Pour les retours effectués après le délai légal de rétractation, nous vous "
        "remboursons dans les {days}\u00a0jours suivant la réception de votre retour, via "
        "le moyen de paiement utilisé pour la commande."
    ),
    "outbound_no": (
        "Si l'article ne présente aucun problème, les frais de livraison initiaux ne sont "
        "pas remboursés."
    ),
    "outbound_yes": "Nous remboursons également les frais de livraison initiaux.",
    "outbound_no_after_legal": (
        "Dans ce cas, les frais de livraison initiaux ne sont pas remboursés."
    ),
    "outbound_fault_yes": (
        "Si un article est endommagé, défectueux ou ne correspond pas à votre commande, "
        "nous remboursons également les frais de livraison initiaux."
    ),
    "outbound_fault_no": (
        "Si un article est endommagé, défectueux ou ne correspond pas à votre commande, "
        "nous remboursons le prix de l'article, mais pas les frais de livraison initiaux."
    ),
    "inspect_min": (
        "Les articles d'une valeur de {amount} ou plus sont contrôlés à leur arrivée avant "
        "le remboursement."
    ),
    "inspect_all": "Chaque retour est contrôlé à son arrivée avant le remboursement.",
    "inspect_total": (
        "Un retour d'une valeur totale de {amount} ou plus est contrôlé à son arrivée avant "
        "le remboursement."
    ),
    "ship_tracked": "Merci de les renvoyer avec un service d'expédition avec suivi.",
    "ship_signature": (
        "Merci de les renvoyer avec un service d'expédition avec suivi et remise contre signature."
    ),
    "returnless_below": (
        "Pour les articles d'une valeur inférieure à {amount}, nous pouvons vous rembourser "
        "sans que vous ayez à les renvoyer, si le retour coûte plus cher que l'article."
    ),
    "returnless_any": (
        "Pour les articles de faible valeur, nous pouvons vous rembourser sans que vous "
        "ayez à les renvoyer, si le retour coûte plus cher que l'article."
    ),
    "legal_withdrawal": (
        "Vous avez le droit de vous rétracter de votre achat sans donner de motif dans un "
        "délai de {days}\u00a0jours. Ce délai court à compter du jour où vous-même, ou un "
        "tiers autre que le transporteur et désigné par vous, prenez physiquement "
        "possession des biens\u00a0; pour une commande livrée en plusieurs fois, à compter "
        "de la réception du dernier lot."
    ),
    "legal_how": (
        "Pour vous rétracter, informez-nous de votre décision par une déclaration dénuée "
        "d'ambiguïté avant la fin du délai, par exemple en lançant un retour ou par e-mail. "
        "Vous devez ensuite nous renvoyer les biens au plus tard {days}\u00a0jours après "
        "nous avoir informés."
    ),
    "legal_guarantee_eu": (
        "Vos droits au titre de la garantie légale de conformité (au moins {years}\u00a0ans "
        "à compter de la livraison) ne sont pas affectés."
    ),
    "legal_guarantee_uk": (
        "Selon le droit britannique, vous pouvez refuser un bien défectueux et être "
        "remboursé dans les {days}\u00a0jours suivant la livraison. Vos autres droits "
        "légaux ne sont pas affectés."
    ),
    "legal_general": (
        "Si vous résidez dans l'UE, l'EEE ou au Royaume-Uni, vous disposez en outre du "
        "droit légal de vous rétracter de votre achat sans motif dans les {days}\u00a0jours "
        "suivant la livraison\u00a0; le remboursement inclut alors les frais de livraison "
        "standard. Ces droits s'appliquent même si la présente politique prévoit autre "
        "chose."
    ),
}

ES: dict[str, str] = {
    "title": "Política de devoluciones – {shop}",
    "intro": (
        "Antes de comprar, esto es lo que necesitas saber sobre las devoluciones: de cuánto "
        "tiempo dispones, en qué estado deben estar los artículos, cuánto cuesta y cuándo "
        "recibes tu dinero."
    ),
    "h_window": "Plazo de devolución",
    "h_condition": "Estado de los artículos devueltos",
    "h_costs": "Gastos de envío y tarifas",
    "h_damaged": "Artículos dañados, defectuosos o equivocados",
    "h_exclusions": "Artículos que no admiten devolución",
    "h_start": "Cómo iniciar una devolución",
    "h_refund": "Reembolsos",
    "h_legal": "Tus derechos legales",
    "period_days_one": "{n}\u00a0día",
    "period_days_other": "{n}\u00a0días",
    "period_years_one": "{n}\u00a0año",
    "period_years_other": "{n}\u00a0años",
    "quote": "«{text}»",
    "window_days": "Dispones de {period} desde la entrega para devolver un artículo.",
    "window_reasons_note": (
        "Esto se aplica a las devoluciones de artículos sin ningún problema, por ejemplo si "
        "has cambiado de opinión o la talla no te queda bien."
    ),
    "window_none": (
        "No aceptamos devoluciones de artículos sin ningún problema, por ejemplo si has "
        "cambiado de opinión. Los artículos dañados, defectuosos o equivocados se tratan "
        "más abajo."
    ),
    "cond_required": (
        "Devuelve los artículos sin usar, completos, con todas sus piezas y accesorios, y "
        "en su embalaje original."
    ),
    "cond_opened_fee": (
        "También puedes devolver artículos abiertos o usados, pero en ese caso se aplica "
        "una tarifa de reposición del {percent}."
    ),
    "cond_legal_check": (
        "Puedes examinar el artículo como lo harías en una tienda. Solo serás responsable "
        "de la disminución de valor de los bienes resultante de una manipulación distinta "
        "a la necesaria para establecer la naturaleza, las características o el "
        "funcionamiento de los bienes."
    ),
    "costs_buyer_pays": (
        "Si el artículo no tiene ningún problema (por ejemplo, has cambiado de opinión o la "
        "talla no te queda bien), tú asumes el coste directo de la devolución."
    ),
    "costs_seller_pays": (
        "La devolución es gratuita, aunque el artículo no tenga ningún problema."
    ),
    "costs_fault_free": (
        "Si un artículo está dañado, es defectuoso o no es el que pediste, nosotros pagamos "
        "el envío de la devolución."
    ),
    "costs_fault_buyer": (
        "También pagas el envío de la devolución de artículos dañados, defectuosos o equivocados."
    ),
    "fee_opened": (
        "Si un artículo se devuelve abierto o usado, descontamos una tarifa de reposición "
        "del {percent} del precio del artículo."
    ),
    "fee_opened_cap": (
        "Si un artículo se devuelve abierto o usado, descontamos una tarifa de reposición "
        "del {percent} del precio del artículo, con un máximo de {cap}."
    ),
    "fee_always": (
        "Si el artículo no tiene ningún problema, descontamos una tarifa de reposición del "
        "{percent} del precio del artículo."
    ),
    "fee_always_cap": (
        "Si el artículo no tiene ningún problema, descontamos una tarifa de reposición del "
        "{percent} del precio del artículo, con un máximo de {cap}."
    ),
    "fee_none": "No cobramos tarifa de reposición.",
    "fee_fault_none": (
        "Los artículos dañados, defectuosos o equivocados no tienen tarifa de reposición."
    ),
    "fee_legal_opened": (
        "Si desistes dentro de los {days} días siguientes a la entrega, solo la descontamos "
        "por la disminución de valor debida a una manipulación mayor de la necesaria para "
        "examinar el artículo."
    ),
    "fee_legal_always": (
        "No se aplica si desistes dentro de los {days} días siguientes a la entrega."
    ),
    "fault_intro": (
        "Si un artículo llega dañado, es defectuoso o está incompleto, no coincide con la "
        "descripción o no es el que pediste, inicia una devolución y elige el motivo "
        "correspondiente."
    ),
    "fault_window": (
        "Puedes comunicarnos un artículo dañado, defectuoso o equivocado hasta {period} "
        "después de la entrega."
    ),
    "fault_none": "No aceptamos devoluciones de artículos dañados, defectuosos o equivocados.",
    "evidence": "Si el motivo es {reasons}, envíanos {items}.",
    "ev_photos_one": "una foto",
    "ev_photos_other": "{n} fotos",
    "ev_video": "un vídeo",
    "ev_explanation": "una breve descripción del problema",
    "reason_defective": "Defectuoso",
    "reason_not_as_described": "No coincide con la descripción",
    "reason_damaged_in_transit": "Dañado durante el envío",
    "reason_wrong_item": "Artículo equivocado",
    "reason_missing_parts": "Faltan piezas",
    "excl_intro": "Los siguientes artículos no admiten devolución:",
    "excl_categories_one": "Artículos de la categoría {categories}",
    "excl_categories_other": "Artículos de las categorías {categories}",
    "excl_skus": "Algunos productos concretos",
    "excl_value": "Artículos con un {value}",
    "excl_with_value": "{what} con un {value}",
    "value_below": "valor inferior a {amount}",
    "value_from": "valor de {amount} o más",
    "value_between": "valor de al menos {min} e inferior a {max}",
    "excl_no_fault_only": "{item} (solo si el artículo no tiene ningún problema)",
    "excl_legal_note": (
        "Durante los {days} días siguientes a la entrega, también aceptamos el "
        "desistimiento de estos artículos."
    ),
    "start_online": "Inicia tu devolución en nuestra página de devoluciones:",
    "start_steps": (
        "Elige los artículos y el motivo, y te enviaremos las instrucciones para la devolución."
    ),
    "start_contact": (
        "Para iniciar una devolución, ponte en contacto con nuestro servicio de atención al "
        "cliente e indícanos tu número de pedido, los artículos que quieres devolver y el "
        "motivo."
    ),
    "refund_standard": (
        "Te reembolsamos en un plazo de {days} días desde que recibimos tu devolución, con "
        "el mismo método de pago que usaste en el pedido."
    ),
    "refund_legal": (
        "Si desistes dentro del plazo legal, te devolveremos todos los pagos recibidos, "
        "incluidos los gastos de entrega estándar, a más tardar {days} días naturales a "
        "partir de la fecha en que se nos informe de tu decisión de desistir, utilizando el "
        "mismo medio de pago que empleaste. Podremos retener el reembolso hasta haber "
        "recibido los bienes o hasta que hayas presentado una prueba de su devolución, "
        "según qué condición se cumpla primero."
    ),
    "refund_legal_extra": (
        "Si elegiste una modalidad de entrega más cara que nuestra entrega estándar más "
        "económica, no te reembolsaremos la diferencia."
    ),
    "refund_after_legal": (
        "En las devoluciones posteriores al plazo legal de desistimiento, te reembolsamos en "
        "un plazo de {days} días desde que recibimos tu devolución, con el mismo método de "
        "pago que usaste en el pedido."
    ),
    "outbound_no": (
        "Si el artículo no tiene ningún problema, no se reembolsan los gastos de envío originales."
    ),
    "outbound_yes": "También te reembolsamos los gastos de envío originales.",
    "outbound_no_after_legal": "En ese caso, no se reembolsan los gastos de envío originales.",
    "outbound_fault_yes": (
        "Si un artículo está dañado, es defectuoso o no es el que pediste, también te "
        "reembolsamos los gastos de envío originales."
    ),
    "outbound_fault_no": (
        "Si un artículo está dañado, es defectuoso o no es el que pediste, te reembolsamos "
        "el precio del artículo, pero no los gastos de envío originales."
    ),
    "inspect_min": (
        "Los artículos con un valor de {amount} o más se inspeccionan a su llegada antes "
        "del reembolso."
    ),
    "inspect_all": "Todas las devoluciones se inspeccionan a su llegada antes del reembolso.",
    "inspect_total": (
        "Una devolución con un valor total de {amount} o más se inspecciona a su llegada "
        "antes del reembolso."
    ),
    "ship_tracked": "Envíalos con un servicio de envío con seguimiento.",
    "ship_signature": ("Envíalos con un servicio de envío con seguimiento y firma en la entrega."),
    "returnless_below": (
        "En los artículos con un valor inferior a {amount}, podemos reembolsarte sin que "
        "tengas que devolverlos, si el envío de vuelta cuesta más de lo que vale el "
        "artículo."
    ),
    "returnless_any": (
        "En los artículos de poco valor, podemos reembolsarte sin que tengas que "
        "devolverlos, si el envío de vuelta cuesta más de lo que vale el artículo."
    ),
    "legal_withdrawal": (
        "Tienes derecho a desistir de tu compra en un plazo de {days} días naturales sin "
        "necesidad de justificación. El plazo empieza el día en que recibes físicamente los "
        "bienes, tú o la persona que designes (que no sea el transportista); si el pedido "
        "se entrega en varias partes, el día en que recibes la última."
    ),
    "legal_how": (
        "Para desistir, comunícanos tu decisión mediante una declaración inequívoca antes "
        "de que termine el plazo, por ejemplo iniciando una devolución o por correo "
        "electrónico. Después debes devolvernos los bienes a más tardar {days} días después "
        "de habérnoslo comunicado."
    ),
    "legal_guarantee_eu": (
        "Tus derechos de garantía legal por productos defectuosos (al menos {years} años "
        "desde la entrega) no se ven afectados."
    ),
    "legal_guarantee_uk": (
        "Según la legislación del Reino Unido, puedes rechazar un producto defectuoso y "
        "obtener un reembolso en los {days} días siguientes a la entrega. Tus demás "
        "derechos legales no se ven afectados."
    ),
    "legal_general": (
        "Si resides en la UE, el EEE o el Reino Unido, tienes además el derecho legal de "
        "desistir de tu compra sin justificación en los {days} días siguientes a la "
        "entrega; el reembolso incluye entonces los gastos de entrega estándar. Estos "
        "derechos se aplican aunque esta política diga otra cosa."
    ),
}

IT: dict[str, str] = {
    "title": "Politica di reso – {shop}",
    "intro": (
        "Prima di acquistare, ecco cosa sapere sui resi: quanto tempo hai, in che stato "
        "devono essere gli articoli, quanto costa e quando ricevi il rimborso."
    ),
    "h_window": "Termine per il reso",
    "h_condition": "Condizioni degli articoli restituiti",
    "h_costs": "Spese di reso e commissioni",
    "h_damaged": "Articoli danneggiati, difettosi o errati",
    "h_exclusions": "Articoli non restituibili",
    "h_start": "Come avviare un reso",
    "h_refund": "Rimborsi",
    "h_legal": "I tuoi diritti di legge",
    "period_days_one": "{n}\u00a0giorno",
    "period_days_other": "{n}\u00a0giorni",
    "period_years_one": "{n}\u00a0anno",
    "period_years_other": "{n}\u00a0anni",
    "quote": "«{text}»",
    "window_days": "Hai {period} dalla consegna per restituire un articolo.",
    "window_reasons_note": (
        "Vale per i resi di articoli senza alcun problema, ad esempio se hai cambiato idea "
        "o la taglia non va bene."
    ),
    "window_none": (
        "Non accettiamo resi di articoli senza alcun problema, ad esempio se hai cambiato "
        "idea. Per gli articoli danneggiati, difettosi o errati, vedi più avanti."
    ),
    "cond_required": (
        "Restituisci gli articoli non usati, completi di tutte le parti e gli accessori e "
        "nella confezione originale."
    ),
    "cond_opened_fee": (
        "Puoi restituire anche articoli aperti o usati, ma in questo caso si applica una "
        "commissione di rifornimento del {percent}."
    ),
    "cond_legal_check": (
        "Puoi esaminare l'articolo come faresti in negozio. Sei responsabile solo della "
        "diminuzione del valore dei beni risultante da una manipolazione dei beni diversa "
        "da quella necessaria per stabilire la natura, le caratteristiche e il "
        "funzionamento dei beni."
    ),
    "costs_buyer_pays": (
        "Se l'articolo non ha alcun problema (ad esempio hai cambiato idea o la taglia non "
        "va bene), il costo diretto della restituzione è a tuo carico."
    ),
    "costs_seller_pays": ("La restituzione è gratuita, anche se l'articolo non ha alcun problema."),
    "costs_fault_free": (
        "Se un articolo è danneggiato, difettoso o diverso da quello ordinato, le spese di "
        "reso sono a nostro carico."
    ),
    "costs_fault_buyer": (
        "Le spese di reso sono a tuo carico anche per articoli danneggiati, difettosi o errati."
    ),
    "fee_opened": (
        "Se un articolo viene restituito aperto o usato, tratteniamo una commissione di "
        "rifornimento del {percent} del prezzo dell'articolo."
    ),
    "fee_opened_cap": (
        "Se un articolo viene restituito aperto o usato, tratteniamo una commissione di "
        "rifornimento del {percent} del prezzo dell'articolo, fino a un massimo di {cap}."
    ),
    "fee_always": (
        "Se l'articolo non ha alcun problema, tratteniamo una commissione di rifornimento "
        "del {percent} del prezzo dell'articolo."
    ),
    "fee_always_cap": (
        "Se l'articolo non ha alcun problema, tratteniamo una commissione di rifornimento "
        "del {percent} del prezzo dell'articolo, fino a un massimo di {cap}."
    ),
    "fee_none": "Non applichiamo alcuna commissione di rifornimento.",
    "fee_fault_none": (
        "Per gli articoli danneggiati, difettosi o errati non si applica alcuna "
        "commissione di rifornimento."
    ),
    "fee_legal_opened": (
        "Se recedi entro {days} giorni dalla consegna, la tratteniamo solo per la "
        "diminuzione di valore dovuta a una manipolazione diversa da quella necessaria per "
        "esaminare l'articolo."
    ),
    "fee_legal_always": "Non si applica se recedi entro {days} giorni dalla consegna.",
    "fault_intro": (
        "Se un articolo arriva danneggiato, è difettoso o incompleto, non corrisponde alla "
        "descrizione o non è quello che hai ordinato, avvia un reso e scegli il motivo "
        "corrispondente."
    ),
    "fault_window": (
        "Puoi segnalarci un articolo danneggiato, difettoso o errato fino a {period} dopo "
        "la consegna."
    ),
    "fault_none": "Non accettiamo resi di articoli danneggiati, difettosi o errati.",
    "evidence": "Se il motivo è {reasons}, inviaci {items}.",
    "ev_photos_one": "una foto",
    "ev_photos_other": "{n} foto",
    "ev_video": "un video",
    "ev_explanation": "una breve descrizione del problema",
    "reason_defective": "Difettoso",
    "reason_not_as_described": "Non conforme alla descrizione",
    "reason_damaged_in_transit": "Danneggiato durante il trasporto",
    "reason_wrong_item": "Articolo sbagliato",
    "reason_missing_parts": "Parti mancanti",
    "excl_intro": "I seguenti articoli non possono essere restituiti:",
    "excl_categories_one": "Articoli della categoria {categories}",
    "excl_categories_other": "Articoli delle categorie {categories}",
    "excl_skus": "Alcuni prodotti specifici",
    "excl_value": "Articoli con un {value}",
    "excl_with_value": "{what} con un {value}",
    "value_below": "valore inferiore a {amount}",
    "value_from": "valore pari o superiore a {amount}",
    "value_between": "valore pari o superiore a {min} e inferiore a {max}",
    "excl_no_fault_only": "{item} (solo se l'articolo non ha alcun problema)",
    "excl_legal_note": (
        "Entro {days} giorni dalla consegna accettiamo il recesso anche per questi articoli."
    ),
    "start_online": "Avvia il reso dalla nostra pagina dei resi:",
    "start_steps": "Scegli gli articoli e il motivo e ti invieremo le istruzioni per il reso.",
    "start_contact": (
        "Per avviare un reso, contatta il nostro servizio clienti indicando il numero "
        "d'ordine, gli articoli da restituire e il motivo."
    ),
    "refund_standard": (
        "Ti rimborsiamo entro {days} giorni dalla ricezione del reso, con lo stesso metodo "
        "di pagamento usato per l'ordine."
    ),
    "refund_legal": (
        "Se recedi entro il termine di legge, ti rimborsiamo tutti i pagamenti ricevuti, "
        "compresi i costi di consegna standard, senza indebito ritardo e comunque entro "
        "{days} giorni dal giorno in cui siamo informati della tua decisione di recedere, "
        "utilizzando lo stesso mezzo di pagamento che hai usato. Possiamo sospendere il "
        "rimborso fino al ricevimento dei beni oppure fino a quando non avrai dimostrato di "
        "averli rispediti, se precedente."
    ),
    "refund_legal_extra": (
        "Se hai scelto una modalità di consegna più costosa della nostra consegna standard "
        "più economica, la differenza non ti viene rimborsata."
    ),
    "refund_after_legal": (
        "Per i resi effettuati dopo il termine legale di recesso, ti rimborsiamo entro "
        "{days} giorni dalla ricezione del reso, con lo stesso metodo di pagamento usato "
        "per l'ordine."
    ),
    "outbound_no": (
        "Se l'articolo non ha alcun problema, le spese di spedizione originali non vengono "
        "rimborsate."
    ),
    "outbound_yes": "Ti rimborsiamo anche le spese di spedizione originali.",
    "outbound_no_after_legal": (
        "In questo caso le spese di spedizione originali non vengono rimborsate."
    ),
    "outbound_fault_yes": (
        "Se un articolo è danneggiato, difettoso o diverso da quello ordinato, ti "
        "rimborsiamo anche le spese di spedizione originali."
    ),
    "outbound_fault_no": (
        "Se un articolo è danneggiato, difettoso o diverso da quello ordinato, ti "
        "rimborsiamo il prezzo dell'articolo, ma non le spese di spedizione originali."
    ),
    "inspect_min": (
        "Gli articoli di valore pari o superiore a {amount} vengono controllati all'arrivo "
        "prima del rimborso."
    ),
    "inspect_all": "Ogni reso viene controllato all'arrivo prima del rimborso.",
    "inspect_total": (
        "Un reso di valore complessivo pari o superiore a {amount} viene controllato "
        "all'arrivo prima del rimborso."
    ),
    "ship_tracked": "Rispediscili con un servizio di spedizione tracciato.",
    "ship_signature": (
        "Rispediscili con un servizio di spedizione tracciato con firma alla consegna."
    ),
    "returnless_below": (
        "Per gli articoli di valore inferiore a {amount} possiamo rimborsarti senza "
        "chiederti di restituirli, se la spedizione costerebbe più dell'articolo stesso."
    ),
    "returnless_any": (
        "Per gli articoli di basso valore possiamo rimborsarti senza chiederti di "
        "restituirli, se la spedizione costerebbe più dell'articolo stesso."
    ),
    "legal_withdrawal": (
        "Hai il diritto di recedere dall'acquisto entro {days} giorni senza dover fornire "
        "alcuna motivazione. Il periodo decorre dal giorno in cui ricevi fisicamente i beni "
        "(tu o una persona da te designata, diversa dal vettore); per un ordine consegnato "
        "in più parti, dal giorno in cui ricevi l'ultima."
    ),
    "legal_how": (
        "Per recedere, comunicaci la tua decisione con una dichiarazione esplicita prima "
        "della scadenza del termine, ad esempio avviando un reso o via e-mail. Dovrai poi "
        "rispedirci i beni entro {days} giorni dalla comunicazione."
    ),
    "legal_guarantee_eu": (
        "Restano salvi i tuoi diritti di garanzia legale per i beni difettosi (almeno "
        "{years} anni dalla consegna)."
    ),
    "legal_guarantee_uk": (
        "Secondo la legge britannica, puoi rifiutare un bene difettoso e ottenere un "
        "rimborso entro {days} giorni dalla consegna. Restano salvi gli altri tuoi "
        "diritti di legge."
    ),
    "legal_general": (
        "Se risiedi nell'UE, nello SEE o nel Regno Unito, hai inoltre il diritto di legge "
        "di recedere dall'acquisto senza motivazione entro {days} giorni dalla consegna; in "
        "tal caso il rimborso comprende anche i costi di consegna standard. Questi diritti "
        "valgono anche se questa politica prevede diversamente."
    ),
}

JA: dict[str, str] = {
    "title": "{shop} 返品ポリシー",
    "intro": (
        "ご購入の前に、返品について知っておいていただきたいこと（返品期限、商品の状態、"
        "費用、返金の時期）をまとめました。"
    ),
    "h_window": "返品期限",
    "h_condition": "返品する商品の状態",
    "h_costs": "返送料と手数料",
    "h_damaged": "破損・不良・誤配送の商品",
    "h_exclusions": "返品できない商品",
    "h_start": "返品の手続き方法",
    "h_refund": "返金について",
    "h_legal": "法律上の権利",
    "period_days_one": "{n}日",
    "period_days_other": "{n}日",
    "period_years_one": "{n}年",
    "period_years_other": "{n}年",
    "quote": "「{text}」",
    "window_days": "商品到着から{period}以内であれば返品できます。",
    "window_reasons_note": (
        "これは、気が変わった場合やサイズが合わない場合など、商品に問題のない"
        "お客様都合の返品が対象です。"
    ),
    "window_none": (
        "気が変わった場合など、商品に問題のないお客様都合の返品はお受けしておりません。"
        "破損・不良・誤配送の商品については下記をご覧ください。"
    ),
    "cond_required": (
        "商品は未使用の状態で、部品や付属品をすべてそろえ、元のパッケージに入れてご返品ください。"
    ),
    "cond_opened_fee": (
        "開封済み・使用済みの商品も返品できますが、その場合は{percent}の返品手数料がかかります。"
    ),
    "cond_legal_check": (
        "店頭で確かめるのと同じように商品を確認していただいて構いません。商品の性質・特徴・"
        "機能を確認するのに必要な範囲を超えた取り扱いによって生じた価値の減少についてのみ、"
        "お客様にご負担いただきます。"
    ),
    "costs_buyer_pays": (
        "気が変わった場合やサイズが合わない場合など、商品に問題のない返品の返送料は"
        "お客様のご負担となります。"
    ),
    "costs_seller_pays": "商品に問題のないお客様都合の返品でも、返送料は無料です。",
    "costs_fault_free": "商品の破損・不良・誤配送の場合、返送料は当店が負担します。",
    "costs_fault_buyer": "破損・不良・誤配送の商品についても、返送料はお客様のご負担となります。",
    "fee_opened": (
        "開封済みまたは使用済みの状態で返品された商品については、商品価格の{percent}を"
        "返品手数料として差し引きます。"
    ),
    "fee_opened_cap": (
        "開封済みまたは使用済みの状態で返品された商品については、商品価格の{percent}"
        "（上限{cap}）を返品手数料として差し引きます。"
    ),
    "fee_always": (
        "商品に問題のないお客様都合の返品では、商品価格の{percent}を返品手数料として差し引きます。"
    ),
    "fee_always_cap": (
        "商品に問題のないお客様都合の返品では、商品価格の{percent}（上限{cap}）を"
        "返品手数料として差し引きます。"
    ),
    "fee_none": "返品手数料はいただきません。",
    "fee_fault_none": "破損・不良・誤配送の商品には返品手数料はかかりません。",
    "fee_legal_opened": (
        "お届けから{days}日以内の撤回の場合は、商品の確認に必要な範囲を超えた取り扱いに"
        "よって価値が下がったときにのみ差し引きます。"
    ),
    "fee_legal_always": "お届けから{days}日以内の撤回には適用されません。",
    "fault_intro": (
        "商品が破損していた、不良品だった、部品が足りない、説明と異なる、注文と違う商品が"
        "届いた場合は、返品手続きを開始し、該当する理由を選んでください。"
    ),
    "fault_window": "破損・不良・誤配送の商品は、お届けから{period}以内にご連絡ください。",
    "fault_none": "破損・不良・誤配送の商品の返品はお受けしておりません。",
    "evidence": "返品理由が{reasons}の場合は、{items}をお送りください。",
    "ev_photos_one": "写真1枚",
    "ev_photos_other": "写真{n}枚",
    "ev_video": "動画",
    "ev_explanation": "問題の簡単な説明",
    "reason_defective": "不良品",
    "reason_not_as_described": "説明と異なる",
    "reason_damaged_in_transit": "配送中の破損",
    "reason_wrong_item": "注文と異なる商品",
    "reason_missing_parts": "部品の不足",
    "excl_intro": "以下の商品は返品できません。",
    "excl_categories_one": "{categories}カテゴリーの商品",
    "excl_categories_other": "{categories}カテゴリーの商品",
    "excl_skus": "一部の特定商品",
    "excl_value": "価格が{value}の商品",
    "excl_with_value": "{what}のうち、価格が{value}のもの",
    "value_below": "{amount}未満",
    "value_from": "{amount}以上",
    "value_between": "{min}以上{max}未満",
    "excl_no_fault_only": "{item}（商品に問題のないお客様都合の返品の場合のみ）",
    "excl_legal_note": "お届けから{days}日以内であれば、これらの商品も撤回（返品）をお受けします。",
    "start_online": "返品は以下の返品ページからお手続きください。",
    "start_steps": "返品する商品と理由を選択していただくと、返品方法をご案内します。",
    "start_contact": (
        "返品をご希望の場合は、注文番号、返品する商品、返品理由を添えてカスタマーサービス"
        "までご連絡ください。"
    ),
    "refund_standard": "返品商品の到着から{days}日以内に、ご注文時のお支払い方法で返金いたします。",
    "refund_legal": (
        "法定期間内に撤回された場合は、標準配送料を含め、お支払いいただいた全額を、撤回の"
        "ご連絡を受けた日から{days}日以内に、ご注文時と同じお支払い方法で返金します。"
        "ただし、商品が当店に届くか、お客様が商品を発送したことを証明されるまで"
        "（いずれか早い方）、返金を保留する場合があります。"
    ),
    "refund_legal_extra": (
        "最も安い標準配送より高い配送方法を選択された場合、その差額は返金されません。"
    ),
    "refund_after_legal": (
        "法定の撤回期間を過ぎてからの返品は、返品商品の到着から{days}日以内に、ご注文時の"
        "お支払い方法で返金いたします。"
    ),
    "outbound_no": "商品に問題のないお客様都合の返品の場合、ご注文時の送料は返金されません。",
    "outbound_yes": "ご注文時の送料も返金いたします。",
    "outbound_no_after_legal": "この場合、ご注文時の送料は返金されません。",
    "outbound_fault_yes": "商品の破損・不良・誤配送の場合は、ご注文時の送料も返金いたします。",
    "outbound_fault_no": (
        "商品の破損・不良・誤配送の場合、商品代金は返金いたしますが、ご注文時の送料は"
        "返金されません。"
    ),
    "inspect_min": "{amount}以上の商品は、到着後に検品してから返金いたします。",
    "inspect_all": "すべての返品商品は、到着後に検品してから返金いたします。",
    "inspect_total": "合計{amount}以上の返品は、到着後に検品してから返金いたします。",
    "ship_tracked": "追跡可能な配送方法でご返送ください。",
    "ship_signature": "追跡可能で、受け取り時に署名が必要な配送方法でご返送ください。",
    "returnless_below": (
        "{amount}未満の商品は、返送料が商品の価値を上回る場合、商品をご返送いただかずに"
        "返金することがあります。"
    ),
    "returnless_any": (
        "低価格の商品は、返送料が商品の価値を上回る場合、商品をご返送いただかずに"
        "返金することがあります。"
    ),
    "legal_withdrawal": (
        "お客様は、理由を問わず{days}日以内に購入を撤回する権利があります。期間は、"
        "お客様またはお客様が指定した方（配送業者を除く）が商品を実際に受け取った日から"
        "始まります。分割して配送される注文の場合は、最後の商品を受け取った日からです。"
    ),
    "legal_how": (
        "撤回される場合は、期間内に、返品手続きの開始やメールなどで撤回の意思を明確に"
        "お知らせください。その後、お知らせいただいた日から{days}日以内に商品をご返送ください。"
    ),
    "legal_guarantee_eu": (
        "不良品に関する法定保証（お届けから最低{years}年間）に基づくお客様の権利は、"
        "これにより制限されません。"
    ),
    "legal_guarantee_uk": (
        "英国法により、お届けから{days}日以内であれば、不良品の受け取りを拒否して返金を"
        "受けることができます。その他の法律上の権利も制限されません。"
    ),
    "legal_general": (
        "EU、EEAまたは英国にお住まいの場合、お届けから{days}日以内であれば、理由を問わず"
        "購入を撤回する法律上の権利があり、その場合は標準配送料も返金されます。これらの"
        "権利は、本ポリシーの内容にかかわらず適用されます。"
    ),
}

ZH_HANS: dict[str, str] = {
    "title": "{shop}退货政策",
    "intro": "下单前，请了解我们的退货规则：退货期限、商品状态要求、费用以及退款时间。",
    "h_window": "退货期限",
    "h_condition": "退货商品状态",
    "h_costs": "退货运费及手续费",
    "h_damaged": "商品损坏、有缺陷或发错货",
    "h_exclusions": "不可退货的商品",
    "h_start": "如何申请退货",
    "h_refund": "退款",
    "h_legal": "您的法定权利",
    "period_days_one": "{n}天",
    "period_days_other": "{n}天",
    "period_years_one": "{n}年",
    "period_years_other": "{n}年",
    "quote": "“{text}”",
    "window_days": "您可在收货后{period}内退货。",
    "window_reasons_note": "此规定适用于商品本身没有问题的退货，例如您改变主意或尺码不合适。",
    "window_none": (
        "商品本身没有问题的退货（例如您改变主意）恕不接受。商品损坏、有缺陷或发错货的情况请见下文。"
    ),
    "cond_required": "请确保退回的商品未经使用、部件和配件齐全，并使用原包装。",
    "cond_opened_fee": "已拆封或已使用的商品仍可退货，但需收取{percent}的重新入库费。",
    "cond_legal_check": (
        "您可以像在实体店一样检查商品。只有因超出确认商品性质、特征和功能所必需的操作而"
        "导致的商品贬值，才需由您承担。"
    ),
    "costs_buyer_pays": (
        "如商品本身没有问题（例如您改变主意或尺码不合适），寄回商品的直接费用由您承担。"
    ),
    "costs_seller_pays": "即使商品本身没有问题，寄回也是免费的。",
    "costs_fault_free": "如商品损坏、有缺陷或发错货，退货运费由我们承担。",
    "costs_fault_buyer": "商品损坏、有缺陷或发错货时，退货运费同样由您承担。",
    "fee_opened": "如退回的商品已拆封或已使用，我们将扣除商品价格{percent}的重新入库费。",
    "fee_opened_cap": (
        "如退回的商品已拆封或已使用，我们将扣除商品价格{percent}的重新入库费，最高{cap}。"
    ),
    "fee_always": "如商品本身没有问题，我们将扣除商品价格{percent}的重新入库费。",
    "fee_always_cap": "如商品本身没有问题，我们将扣除商品价格{percent}的重新入库费，最高{cap}。",
    "fee_none": "我们不收取重新入库费。",
    "fee_fault_none": "商品损坏、有缺陷或发错货时，不收取重新入库费。",
    "fee_legal_opened": (
        "如您在收货后{days}天内撤回购买，仅当商品因超出检查所需的操作而贬值时，我们才扣除该费用。"
    ),
    "fee_legal_always": "如您在收货后{days}天内撤回购买，则不收取该费用。",
    "fault_intro": (
        "如商品到货时已损坏、有缺陷或缺少部件，与描述不符，或不是您订购的商品，请申请退货并选择相应的原因。"
    ),
    "fault_window": "商品损坏、有缺陷或发错货的，您可在收货后{period}内告知我们。",
    "fault_none": "商品损坏、有缺陷或发错货的退货恕不接受。",
    "evidence": "如果退货原因为{reasons}，请向我们提供{items}。",
    "ev_photos_one": "1张照片",
    "ev_photos_other": "{n}张照片",
    "ev_video": "一段视频",
    "ev_explanation": "问题的简要说明",
    "reason_defective": "商品有缺陷",
    "reason_not_as_described": "与描述不符",
    "reason_damaged_in_transit": "运输途中损坏",
    "reason_wrong_item": "发错货",
    "reason_missing_parts": "缺少部件",
    "excl_intro": "以下商品不支持退货：",
    "excl_categories_one": "{categories}类别的商品",
    "excl_categories_other": "{categories}类别的商品",
    "excl_skus": "部分指定商品",
    "excl_value": "价值{value}的商品",
    "excl_with_value": "{what}（价值{value}）",
    "value_below": "低于{amount}",
    "value_from": "{amount}及以上",
    "value_between": "不低于{min}且低于{max}",
    "excl_no_fault_only": "{item}（仅限商品本身没有问题的退货）",
    "excl_legal_note": "在收货后{days}天内，这些商品也可以撤回购买并退货。",
    "start_online": "请通过以下退货页面申请退货：",
    "start_steps": "选择要退的商品和原因后，我们会将退货说明发送给您。",
    "start_contact": "如需退货，请联系我们的客服，并提供订单号、要退的商品及退货原因。",
    "refund_standard": "我们会在收到退货后{days}天内，按您下单时的支付方式退款。",
    "refund_legal": (
        "如您在法定期限内撤回购买，我们将在收到您撤回通知之日起{days}天内，通过您下单时"
        "使用的支付方式退还您支付的全部款项，包括标准配送费。在收到退回的商品或您提供已"
        "寄回商品的证明之前（以较早者为准），我们可以暂缓退款。"
    ),
    "refund_legal_extra": "如您选择了比我们最便宜的标准配送更贵的配送方式，额外费用将不予退还。",
    "refund_after_legal": (
        "超过法定撤回期限的退货，我们会在收到退货后{days}天内，按您下单时的支付方式退款。"
    ),
    "outbound_no": "如商品本身没有问题，原订单的运费不予退还。",
    "outbound_yes": "我们也会退还原订单的运费。",
    "outbound_no_after_legal": "此时，原订单的运费不予退还。",
    "outbound_fault_yes": "如商品损坏、有缺陷或发错货，我们也会退还原订单的运费。",
    "outbound_fault_no": "如商品损坏、有缺陷或发错货，我们会退还商品款项，但原订单的运费不予退还。",
    "inspect_min": "价值{amount}及以上的商品，我们会在收到后先行检验再退款。",
    "inspect_all": "所有退货商品都会在收到后先行检验再退款。",
    "inspect_total": "总价值{amount}及以上的退货，我们会在收到后先行检验再退款。",
    "ship_tracked": "请使用可追踪的物流服务寄回。",
    "ship_signature": "请使用可追踪且需签收的物流服务寄回。",
    "returnless_below": (
        "对于价值低于{amount}的商品，如寄回的费用高于商品本身的价值，我们可能会直接退款，无需您寄回商品。"
    ),
    "returnless_any": (
        "对于低价值商品，如寄回的费用高于商品本身的价值，我们可能会直接退款，无需您寄回商品。"
    ),
    "legal_withdrawal": (
        "您有权在{days}天内无理由撤回购买。期限自您或您指定的人（承运人除外）实际收到商品"
        "之日起算；如订单分批送达，则自收到最后一批商品之日起算。"
    ),
    "legal_how": (
        "如需撤回，请在期限届满前以明确的方式告知我们，例如申请退货或发送电子邮件。之后，"
        "请在告知我们之日起{days}天内寄回商品。"
    ),
    "legal_guarantee_eu": "您针对有缺陷商品享有的法定保证权利（自交货起至少{years}年）不受影响。",
    "legal_guarantee_uk": (
        "根据英国法律，您可以在收货后{days}天内拒收有缺陷的商品并获得退款。您的其他法定权利不受影响。"
    ),
    "legal_general": (
        "如果您居住在欧盟、欧洲经济区或英国，您还享有在收货后{days}天内无理由撤回购买的"
        "法定权利，届时退款包括标准配送费。即使本政策另有规定，这些权利仍然适用。"
    ),
}

CATALOGUES: dict[str, dict[str, str]] = {
    "en": EN,
    "de": DE,
    "fr": FR,
    "es": ES,
    "it": IT,
    "ja": JA,
    "zh-Hans": ZH_HANS,
}
"""Catalogue per language tag; `page.resolve_language` maps request tags onto these keys."""
