# AWS on the real cluster, sourced by pods.sh (one cluster serves every
# store): moto (PyPI, cached venv) behind tests/moto/aws_front.py at the real
# host names (secretsmanager/ssm/sts.<region>.amazonaws.com, which the
# cluster's DNS gives 10.77.0.2), HTTPS with a test CA the sidecar image
# trusts. IRSA with the token kubelet projects: the front lets STS answer only
# a token signed by the cluster's key for audience sts.amazonaws.com, since
# moto checks none. The AWS provider's integration class and pod
# (manifests/examples/aws/basic-test-mount*.yaml) applied unchanged.
#
#   aws_certs <workdir>   before e2e_images: the CA and the front's certificate
#   aws_e2e               the checks (needs pods.sh's K, check, follows, W)

AWS_IP=10.77.0.2
AWS_ACCOUNT=123456789012
AWS_ROLE=arn:aws:iam::$AWS_ACCOUNT:role/basic-test-mount-role
AWS_NAMES="secretsmanager.us-west-2.amazonaws.com ssm.us-west-2.amazonaws.com sts.us-west-2.amazonaws.com secretsmanager.us-east-2.amazonaws.com ssm.us-east-2.amazonaws.com sts.us-east-2.amazonaws.com sts.amazonaws.com"

aws_certs() {
  local d=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=secret-injector-e2e-aws-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$d/aws-ca.key" -out "$d/aws-ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=amazonaws.com \
    -keyout "$d/aws-front.key" -out "$d/aws-front.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=DNS:*.us-west-2.amazonaws.com,DNS:*.us-east-2.amazonaws.com,DNS:sts.amazonaws.com' \
    'basicConstraints=critical,CA:FALSE' 'extendedKeyUsage=serverAuth' >"$d/aws-front.ext"
  openssl x509 -req -in "$d/aws-front.csr" -CA "$d/aws-ca.pem" -CAkey "$d/aws-ca.key" \
    -CAcreateserial -days 2 -extfile "$d/aws-front.ext" -out "$d/aws-front.pem" 2>/dev/null
}

aws_e2e() {
  local venv=${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/moto-venv
  tests/venv.sh moto-venv tests/moto/requirements.txt >/dev/null
  in_ns ip addr add "$AWS_IP/32" dev lo
  echo "$AWS_IP $AWS_NAMES" >>"$W/dns-hosts"
  tests/cluster/cluster.sh dns-reload "$W" >/dev/null
  kc_spawn moto "$W" "$venv/bin/moto_server" -H 127.0.0.1 -p 5000
  aws_front_start() {
    kc_spawn aws-front "$W" "$venv/bin/python" tests/moto/aws_front.py --listen "$AWS_IP:443" \
      --cert "$W/aws-front.pem" --key "$W/aws-front.key" --backend 127.0.0.1:5000 \
      --sa-pub "$SA_PUB" --accepted "$W/aws-accepted.log"
    for _ in $(seq 1 100); do
      in_ns curl -s -o /dev/null --cacert "$W/aws-ca.pem" https://sts.us-west-2.amazonaws.com/ && return 0
      sleep 0.1
    done
  }
  for _ in $(seq 1 100); do in_ns curl -fs -o /dev/null http://127.0.0.1:5000/moto-api/ && break; sleep 0.1; done
  aws_front_start
  # boto3 writes the fixtures straight to moto (not through the front).
  fixture() { in_ns "$venv/bin/python" tests/moto/fixture.py http://127.0.0.1:5000; }
  local json='{"username":"SecretsManagerUser","password":"SecretsManagerPassword"}' replies
  replies=$(fixture <<JSON
[
 {"service":"ssm","region":"us-west-2","op":"put_parameter","args":{"Name":"ParameterStoreTest1","Value":"ParameterStoreTest1Value","Type":"String"}},
 {"service":"ssm","region":"us-west-2","op":"put_parameter","args":{"Name":"ParameterStoreTestWithLongName","Value":"ParameterStoreTest2Value","Type":"SecureString"}},
 {"service":"ssm","region":"us-west-2","op":"put_parameter","args":{"Name":"ParameterStoreRotationTest","Value":"BeforeRotation","Type":"String"}},
 {"service":"ssm","region":"us-west-2","op":"put_parameter","args":{"Name":"jsonSsm","Value":$(jq -Rn --arg v "$json" '$v'),"Type":"String"}},
 {"service":"secretsmanager","region":"us-west-2","op":"create_secret","args":{"Name":"SecretsManagerRotationTest","SecretString":"BeforeRotation"}},
 {"service":"secretsmanager","region":"us-west-2","op":"create_secret","args":{"Name":"SecretsManagerTest1","SecretString":"SecretsManagerTest1Value"}},
 {"service":"secretsmanager","region":"us-west-2","op":"create_secret","args":{"Name":"SecretsManagerTest2","SecretString":"SecretsManagerTest2Value"}},
 {"service":"secretsmanager","region":"us-east-2","op":"create_secret","args":{"Name":"SecretsManagerTest2","SecretString":"SecretsManagerTest2Failover"}},
 {"service":"secretsmanager","region":"us-west-2","op":"create_secret","args":{"Name":"SecretsManagerSync","SecretString":"SecretUser"}},
 {"service":"secretsmanager","region":"us-west-2","op":"create_secret","args":{"Name":"secretsManagerJson","SecretString":$(jq -Rn --arg v "$json" '$v')}}
]
JSON
  )
  local test1_version
  test1_version=$(jq -r '.[5].VersionId' <<<"$replies")

  # The provider's IRSA setup: the pod's ServiceAccount names the role, and
  # may write the class's three synced Secrets (and nothing else).
  K create serviceaccount basic-test-mount-sa >/dev/null
  K annotate serviceaccount basic-test-mount-sa "eks.amazonaws.com/role-arn=$AWS_ROLE" >/dev/null
  K create role basic-test-mount --verb=get,create,patch --resource=secrets \
    --resource-name=secret --resource-name=json-ssm --resource-name=secrets-manager-json >/dev/null
  K create rolebinding basic-test-mount --role=basic-test-mount \
    --serviceaccount=default:basic-test-mount-sa >/dev/null
  K create rolebinding basic-test-mount-status --role=secret-injector-pod \
    --serviceaccount=default:basic-test-mount-sa >/dev/null
  K apply -f manifests/examples/aws/basic-test-mount-spc.yaml -f manifests/examples/aws/basic-test-mount.yaml >/dev/null
  local apod=basic-test-mount
  check "aws: the provider's integration pod starts (IRSA, Secrets Manager and Parameter Store)" \
    K wait --for=condition=Ready "pod/$apod" --timeout=180s
  aws_file() { K exec "$apod" -c busybox -- cat "/mnt/secrets-store/$1"; }
  aws_files() {
    local pair bad=0
    for pair in ParameterStoreTest1=ParameterStoreTest1Value ParameterStoreTest2=ParameterStoreTest2Value \
      ParameterStoreRotationTest=BeforeRotation SecretsManagerRotationTest=BeforeRotation \
      SecretsManagerTest1=SecretsManagerTest1Value SecretsManagerTest2=SecretsManagerTest2Value \
      SecretsManagerSync=SecretUser ssmUsername=SecretsManagerUser ssmPassword=SecretsManagerPassword \
      secretsManagerUsername=SecretsManagerUser secretsManagerPassword=SecretsManagerPassword \
      "jsonSsm=$json" "secretsManagerJson=$json"; do
      [ "$(aws_file "${pair%%=*}")" = "${pair#*=}" ] || { echo "aws: ${pair%%=*} differs"; bad=1; }
    done
    return "$bad"
  }
  check "aws: every file as the provider writes it (aliases, ARN, SecureString, jmesPath)" aws_files
  aws_secret() { K get secret "$1" -o jsonpath="{.data.$2}" | base64 -d; }
  check "aws: the synced Secrets (secret, json-ssm, secrets-manager-json)" \
    test "$(aws_secret secret username) $(aws_secret json-ssm password) $(aws_secret secrets-manager-json username)" = \
    "SecretUser SecretsManagerPassword SecretsManagerUser"
  local astatus=$apod-default-basic-test-mount-spc
  aws_version() { K get secretproviderclasspodstatus "$astatus" -o json | jq -r --arg id "$1" '.status.objects[] | select(.id == $id) | .version'; }
  check "aws: the PodStatus has the Secrets Manager VersionId and the parameter's version" \
    test "$(aws_version SecretsManagerTest1) $(aws_version ParameterStoreTest1)" = "$test1_version 1"
  check "aws: STS saw the pod's kubelet token for the ServiceAccount's role" \
    grep -qx "system:serviceaccount:default:basic-test-mount-sa $AWS_ROLE" "$W/aws-accepted.log"
  forged_refused() {
    in_ns curl -s --cacert "$W/aws-ca.pem" https://sts.us-west-2.amazonaws.com/ \
      -d "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=$AWS_ROLE&RoleSessionName=x&WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.Zm9yZ2Vk" |
      grep -q InvalidIdentityToken
  }
  check "aws: the STS stand-in refuses a token the cluster did not sign" forged_refused

  # Rotation: moto's values change through boto3; the files follow.
  fixture >/dev/null <<JSON
[{"service":"secretsmanager","region":"us-west-2","op":"put_secret_value","args":{"SecretId":"SecretsManagerRotationTest","SecretString":"AfterRotation"}},
 {"service":"ssm","region":"us-west-2","op":"put_parameter","args":{"Name":"ParameterStoreRotationTest","Value":"AfterRotation","Type":"String","Overwrite":true}}]
JSON
  rotated_at=$(date +%s.%N)
  aws_sm_rotated() { aws_file SecretsManagerRotationTest; }
  aws_ssm_rotated() { aws_file ParameterStoreRotationTest; }
  aws_ssm_version() { aws_version ParameterStoreRotationTest; }
  check "aws rotation: the Secrets Manager file follows" follows file aws_sm_rotated AfterRotation
  check "aws rotation: the Parameter Store file follows" follows file aws_ssm_rotated AfterRotation
  check "aws rotation: the PodStatus has the parameter's version 2" follows PodStatus aws_ssm_version 2

  # The store down: the last good files stay, the status file says why.
  KC_NETNS=$NETNS kc_stop_pid "$W/aws-front.pid" "$W/" 5
  sleep "$(python3 -c "print($INTERVAL * 1.1 + 2)")"
  check "aws outage: the files keep their last good values" \
    test "$(aws_file SecretsManagerRotationTest) $(aws_file SecretsManagerTest1)" = "AfterRotation SecretsManagerTest1Value"
  check "aws outage: the status file names the outage" \
    sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl exec '$apod' -c busybox -- cat /mnt/secrets-store/..secret-injector-status.json | grep -q '\"errorKind\": \"unavailable\"'"
  aws_front_start
  K delete pod "$apod" --wait=false >/dev/null
}
