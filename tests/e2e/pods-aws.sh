# AWS on the real cluster, sourced by pods.sh (one cluster serves every
# store): moto (PyPI, cached venv) on 127.0.0.1:5000 in the cluster's
# namespace, and the address the cluster's DNS gives the real host names
# (secretsmanager/ssm/sts.<region>.amazonaws.com -> 10.77.0.2), where the
# Rust fixture (tests/e2e/src/store/aws.rs) runs tests/moto/aws_front.py:
# HTTPS with a test CA the sidecar image trusts, and an STS that answers only
# a token signed by the cluster's key for audience sts.amazonaws.com, since
# moto checks none. The checks are tests/e2e/tests/pods/aws.rs.
#
#   aws_certs <workdir>   before e2e_images: the CA and the front's certificate
#   aws_up                moto, the address, the names; exports E2E_MOTO_VENV, E2E_AWS_ROLE

AWS_IP=10.77.0.2
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

aws_up() {
  E2E_MOTO_VENV=${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/moto-venv
  E2E_AWS_ROLE=arn:aws:iam::123456789012:role/basic-test-mount-role
  export E2E_MOTO_VENV E2E_AWS_ROLE
  tests/venv.sh moto-venv tests/moto/requirements.txt >/dev/null
  in_ns ip addr add "$AWS_IP/32" dev lo
  echo "$AWS_IP $AWS_NAMES" >>"$W/dns-hosts"
  tests/cluster/cluster.sh dns-reload "$W" >/dev/null
  kc_spawn moto "$W" "$E2E_MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p 5000
  for _ in $(seq 1 100); do in_ns curl -fs -o /dev/null http://127.0.0.1:5000/moto-api/ && return 0; sleep 0.1; done
  echo "pods: moto did not start"; tail -20 "$W/moto.log"; return 1
}
