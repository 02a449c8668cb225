/**
 * For a field whose every call does costly work (an upstream read, a delivery): the operation paid
 * for its first call, and each further one in the same operation (aliases) takes one more request
 * from the tenant's rate through `charge`. One tracker per field.
 */
export function perCallCharge(): (context: object, charge: () => void) => void {
  const called = new WeakSet<object>();
  return (context, charge) => {
    if (called.has(context)) charge();
    else called.add(context);
  };
}
