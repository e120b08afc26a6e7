package member

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KeyField is the Secret field that holds the gossip key.
const KeyField = "key"

// Key returns the gossip encryption key kept in the Secret namespace/name,
// creating the Secret with a random 32-byte key when there is none. Every
// speaker calls it at start; whichever creates the Secret first wins and
// the others read its key.
func Key(ctx context.Context, c client.Client, namespace, name string) ([]byte, error) {
	for range 3 {
		var s corev1.Secret
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s)
		if err == nil {
			key := s.Data[KeyField]
			switch len(key) {
			case 16, 24, 32:
				return key, nil
			}
			return nil, fmt.Errorf("secret %s/%s: field %q holds %d bytes; the gossip key must be 16, 24 or 32 bytes (delete the Secret to have a new one made)", namespace, name, KeyField, len(key))
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "portico"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{KeyField: key},
		}
		err = c.Create(ctx, &s)
		if err == nil {
			return key, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating secret %s/%s: %w", namespace, name, err)
		}
		// Another speaker made it first: read theirs.
	}
	return nil, fmt.Errorf("secret %s/%s: could not read or create it", namespace, name)
}
