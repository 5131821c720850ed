// The Swift example of the reference page (pims.authentication.enrollment - enroll), verbatim
// between the markers, including its "SUCEEDED" typo. Type-checked where a Swift toolchain exists.

func referenceExample(pims: Pims) {
// ---- reference example, verbatim ----
pims.set(api: "pims.authentication.enrollment",
  parameters: [  
  "action": "enroll",
  "pinCode": "1234",
  "smsCode": " "
  ]
  ) { (message) in 
    if message["status"] == "SUCEEDED"    { }    // handle succeeded status
    else if message["status"] == "FAILED" { }    // handle failed status
  } 
// ---- end of reference example ----
}
