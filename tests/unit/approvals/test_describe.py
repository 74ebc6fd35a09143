"""A plan in human terms: sentences, diffs, batch decoding and references."""

from apps.approvals import describe, entities


def test_update_with_a_preimage_reads_old_to_new():
    sentence, changes = describe.sentence_for(
        "crm.lead.update", {"id": 42, "fields": {"TITLE": "ACME order (paid)", "NOPE": 1}},
        {"before": {"ID": "42", "TITLE": "ACME order"}})
    assert sentence == ("Update lead #42 'ACME order': TITLE 'ACME order' → 'ACME order (paid)', "
                        "NOPE (no such field) → 1")
    assert [(c.field, c.before, c.after, c.known) for c in changes] == [
        ("TITLE", "ACME order", "ACME order (paid)", True), ("NOPE", None, 1, False)]


def test_update_without_a_preimage_says_what_it_sets():
    sentence, _ = describe.sentence_for("crm.deal.update", {"id": "7", "fields": {"STAGE_ID": "WON"}})
    assert sentence == "Update deal #7: set STAGE_ID to 'WON'"


def test_delete_names_the_record_its_amount_and_owner():
    sentence, _ = describe.sentence_for(
        "crm.deal.delete", {"id": 7},
        {"before": {"TITLE": "Big deal", "OPPORTUNITY": "12000.00", "CURRENCY_ID": "USD", "ASSIGNED_BY_ID": "3"}})
    assert sentence == "Delete deal #7 'Big deal', 12,000 USD, owner user #3"


def test_camel_case_entities_match_upper_case_write_fields():
    task = entities.ENTITIES["tasks.task"]
    assert entities.field_value(task, {"title": "Call", "responsibleId": "5"}, "RESPONSIBLE_ID") == ("5", True)
    sentence, _ = describe.sentence_for("tasks.task.update", {"taskId": 9, "fields": {"TITLE": "Call back"}},
                                        {"before": {"title": "Call"}})
    assert sentence == "Update task #9 'Call': TITLE 'Call' → 'Call back'"


def test_smart_process_items_need_their_entity_type():
    item = entities.ENTITIES["crm.item"]
    assert entities.record_key(item, {"entityTypeId": 1032, "id": 5, "fields": {}}) == {"id": 5, "entityTypeId": 1032}
    assert entities.record_key(item, {"id": 5}) is None


def test_ids_from_earlier_steps_cannot_be_previewed_and_are_named():
    view = describe.step_view({"name": "upd", "method": "crm.lead.update",
                               "params": {"id": "$result[add]", "fields": {"TITLE": "x"}}})
    assert "(id from an earlier step)" in view.sentence
    assert view.references == ["add"]
    assert view.note == "Uses the result of step 'add'"
    assert entities.record_key(entities.ENTITIES["crm.lead"], {"id": "$result[add]"}) is None


def test_batch_subcommands_are_decoded_into_sentences():
    view = describe.step_view({"name": "b", "method": "batch", "params": {
        "halt": 1, "cmd": {"a": "crm.lead.update?id=3&fields[TITLE]=New", "b": "crm.deal.delete?id=4"}}})
    assert view.sentence == "Run a batch of 2 commands, stopping at the first error"
    assert [c.sentence for c in view.commands] == ["Update lead #3: set TITLE to 'New'", "Delete deal #4"]


def test_unknown_methods_and_reads():
    assert describe.sentence_for("im.notify.system.add", {})[0] == "Call im.notify.system.add"
    assert describe.sentence_for("user.get", {})[0] == "Read with user.get"
    assert describe.sentence_for("crm.lead.add", {"fields": {"TITLE": "Hi", "NAME": "Ann"}})[0] == \
        "Create a lead 'Hi' with 2 fields"


def test_summary_counts_further_steps():
    steps = [{"name": "a", "method": "crm.lead.delete", "params": {"id": 1}},
             {"name": "b", "method": "user.current", "params": {}},
             {"name": "c", "method": "user.current", "params": {}}]
    assert describe.summary(steps) == "Delete lead #1 (+2 more steps)"


def test_parameters_flatten_to_rows():
    assert describe.flatten({"fields": {"TITLE": "x", "PHONE": [{"VALUE": "1"}]}}) == [
        ("fields.TITLE", "x"), ("fields.PHONE[0].VALUE", "1")]
