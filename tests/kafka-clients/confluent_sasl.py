"""confluent-kafka (librdkafka) with SASL against eddy's Kafka listener, for
tests/tests/security_sasl_kafka.rs.

The password is read from the environment variable named by --password-env (never an argument).
Commands (JSON lines, see common.py; every wait has a deadline):

  roundtrip  --mechanism M --user U --topic T --count N
             produces N records (acks=all) and consumes them back from the earliest offset:
             "produced" with the count, then "consumed" with the values in order.
  refused    --mechanism M --user U
             a Producer with these credentials, which must be refused: "refused" with the
             authentication error librdkafka reports.
  scram-admin  --mechanism M --user U --target NAME --target-env VAR
             as U: AdminClient.alter_user_scram_credentials gives NAME a SCRAM-SHA-256
             credential (8192 iterations) for the password in VAR ("upserted"), then
             describe_user_scram_credentials ("described": mechanism and iterations per user),
             NAME lists topics with it ("listed"), the credential is deleted ("deleted"), and
             NAME is refused ("refused-after-delete").
"""

import os

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from common import Deadline, emit, fail, parser


def sasl(args, user, password):
    return {
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": args.mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def password_of(variable):
    value = os.environ.get(variable)
    if value is None:
        fail(f"no password in ${variable}")
    return value


def roundtrip(args, deadline):
    config = sasl(args, args.user, password_of(args.password_env))
    producer = Producer({**config, "acks": "all"})
    errors = []
    for i in range(args.count):
        producer.produce(
            args.topic, value=f"value-{i}".encode(), on_delivery=lambda e, _m: e and errors.append(e)
        )
    if producer.flush(deadline.left()) != 0 or errors:
        fail(f"produce: {errors or 'not all delivered before the deadline'}")
    emit("produced", count=args.count)
    consumer = Consumer({**config, "group.id": f"g-{args.topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(args.topic, 0, 0)])
    values = []
    while len(values) < args.count:
        deadline.check("consuming")
        msg = consumer.poll(min(1.0, deadline.left()))
        if msg is None:
            continue
        if msg.error():
            fail(f"consume: {msg.error()}")
        values.append(msg.value().decode())
    consumer.close()
    emit("consumed", values=values)


def expect_refusal(config, deadline):
    """A client with `config` connects and must be refused; the authentication error's text
    (librdkafka reports it through error_cb, served by poll)."""
    seen, other = [], []

    def on_error(error):
        (seen if error.code() == KafkaError._AUTHENTICATION else other).append(error.str())

    client = Producer({**config, "error_cb": on_error})
    while not seen:
        deadline.check(f"an authentication error (other errors: {other})")
        client.poll(min(1.0, deadline.left()))
    return seen[0]


def refused(args, deadline):
    emit("refused", message=expect_refusal(sasl(args, args.user, password_of(args.password_env)), deadline))


def scram_admin(args, deadline):
    admin = AdminClient(sasl(args, args.user, password_of(args.password_env)))
    target, password = args.target, password_of(args.target_env)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    upsert = UserScramCredentialUpsertion(target, info, password.encode())
    for user, future in admin.alter_user_scram_credentials([upsert], request_timeout=deadline.left()).items():
        future.result(deadline.left())
        emit("upserted", user=user)
    described = admin.describe_user_scram_credentials(request_timeout=deadline.left()).result(deadline.left())
    emit(
        "described",
        users={
            user: [[c.mechanism.name, c.iterations] for c in description.scram_credential_infos]
            for user, description in described.items()
        },
    )
    target_config = {**sasl(args, target, password), "sasl.mechanisms": "SCRAM-SHA-256"}
    metadata = AdminClient(target_config).list_topics(timeout=deadline.left())
    emit("listed", brokers=len(metadata.brokers))
    deletion = UserScramCredentialDeletion(target, ScramMechanism.SCRAM_SHA_256)
    for user, future in admin.alter_user_scram_credentials([deletion], request_timeout=deadline.left()).items():
        future.result(deadline.left())
        emit("deleted", user=user)
    emit("refused-after-delete", message=expect_refusal(target_config, deadline))


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("command", choices=["roundtrip", "refused", "scram-admin"])
    p.add_argument("--mechanism", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", default="SASL_PASSWORD")
    p.add_argument("--topic")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--target")
    p.add_argument("--target-env", default="SASL_TARGET_PASSWORD")
    args = p.parse_args()
    deadline = Deadline(args.timeout)
    try:
        globals()[args.command.replace("-", "_")](args, deadline)
    except KafkaException as e:
        fail(f"{args.command}: {e.args[0]}")


if __name__ == "__main__":
    main()
