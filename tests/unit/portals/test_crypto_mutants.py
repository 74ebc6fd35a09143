"""The undecryptable-secrets message at its edge: twenty places are listed in full, from the
twenty-first on the list is cut with " ...". Written against the survivors of `make mutate
MUTATE_ONLY=crypto` (bench/README.md, "Mutation testing")."""

from apps.portals import crypto


def places(count):
    return [f"portals.Credential.access_token pk={n}" for n in range(count)]


def test_twenty_places_are_listed_in_full_without_an_ellipsis():
    text = str(crypto.UndecryptableSecrets(places(20)))
    assert text == ("20 stored secret(s) cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: "
                    + ", ".join(places(20)))


def test_twenty_one_places_list_the_first_twenty_and_an_ellipsis():
    text = str(crypto.UndecryptableSecrets(places(21)))
    assert text == ("21 stored secret(s) cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: "
                    + ", ".join(places(20)) + " ...")


def test_one_place_is_listed_alone():
    assert str(crypto.UndecryptableSecrets(["portals.Portal.x pk=1"])).endswith(
        "FIELD_ENCRYPTION_KEYS: portals.Portal.x pk=1")
